//! CRD types only: serde + schemars + CEL validation rules + docs.

pub mod condition;
pub mod stack;

pub use condition::{ConditionSpec, merge_conditions};
pub use stack::{
    Binding, BindingEnv, BindingStatus, Component, ComponentState, ComponentStatus, Expose, LocalRef, Port, Protocol,
    SolutionStack, SolutionStackSpec, SolutionStackStatus,
};

use kube::CustomResourceExt;

/// The CRDs this operator serves, as the multi-document YAML `citystack crds` prints.
///
/// Errors: only if serialisation fails, which would be a bug in the types.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    // One entry per kind; AzureResource joins with the Azure issue.
    let crds = vec![SolutionStack::crd()];
    for crd in &crds {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// crds/ must hold exactly what `citystack crds` prints (regenerate with `make crds`).
    #[test]
    fn crds_folder_matches_generated() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        let mut files: Vec<_> = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        files.sort();
        let on_disk: String = files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect();
        let generated = super::crds_yaml().unwrap_or_else(|e| panic!("{e}"));
        assert!(on_disk == generated, "crds/ differs from `citystack crds`: run `make crds`");
    }
}
