//! citystack: a Kubernetes operator that turns a `SolutionStack` into Deployments, Services
//! and servicebinding.io projections, keeps them converged and reports one health signal.

#![warn(missing_docs)]

pub mod api;
pub mod azure;
pub mod backoff;
pub mod binding;
pub mod blueprint;
pub mod cluster;
pub mod error;
pub mod events;
pub mod leader;
pub mod naming;
pub mod ownership;
pub mod permissions;
pub mod readable;
pub mod reconciler;
pub mod relist;
pub mod run;
pub mod shard;
pub mod stack;
pub mod telemetry;
pub mod turns;
pub mod written;
