//! CRD types only: serde + schemars + CEL validation rules + docs.

pub mod condition;
pub mod stack;

pub use condition::{ConditionSpec, merge_conditions};
pub use stack::{
    Binding, BindingEnv, BindingStatus, Component, ComponentState, ComponentStatus, Expose,
    LocalRef, Port, Protocol, SolutionStack, SolutionStackSpec, SolutionStackStatus,
};

use kube::CustomResourceExt;

/// The CRDs this operator serves, as the multi-document YAML `citystack crds` prints.
///
/// Errors: only if serialisation fails, which would be a bug in the types.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in [SolutionStack::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}
