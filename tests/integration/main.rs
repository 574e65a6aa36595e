//! Integration tests against the real local control plane (`make test` starts it). Each test
//! works in its own namespace with its own operator process scoped to that namespace.

mod harness;

mod admission;
mod azure;
mod azure_safety;
mod bindings;
mod blueprints;
mod dependencies;
mod gitops_health;
mod leader_election;
mod lifecycle;
mod ownership;
mod permissions;
mod rollout;
mod secret_canary;
mod sharding;
mod steady_state;
