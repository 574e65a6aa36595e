//! The Azure side: the curated-kind table, the ARM client, credentials, and the
//! AzureResource controller.

pub mod arm;
pub mod cloud;
pub mod controller;
pub mod credential;
pub mod export;
pub mod kinds;
