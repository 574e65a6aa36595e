//! The Azure side: the curated-kind table, the ARM client, credentials, and the
//! AzureResource controller.

pub mod kinds;
