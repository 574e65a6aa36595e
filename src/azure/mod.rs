//! The Azure side: the curated-kind table, the ARM client, credentials, and the
//! AzureResource controller as a pipeline of steps: resolve → observe → plan (pure) → act →
//! status (pure), with deletion beside it.

pub mod act;
pub mod arm;
pub mod budget;
pub mod cloud;
pub mod controller;
pub mod credential;
pub mod delete;
pub mod export;
pub mod hold;
pub mod kinds;
pub mod observe;
pub mod pauses;
pub mod plan;
pub mod resolve;
pub mod response;
pub mod secret;
pub mod status;
