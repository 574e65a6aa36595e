//! CRD types only: serde + schemars + CEL validation rules + docs.

pub mod azure;
pub mod blueprint;
pub mod condition;
pub mod stack;

pub use azure::{
    AzureKind, AzureResource, AzureResourceSpec, AzureResourceStatus, DeletionPolicy, Export, ExportSource,
    GenericSpec, Mode, SecretKeyRef, Sku,
};
pub use blueprint::{
    BlueprintRef, BlueprintStatus, Parameter, ParameterType, Revision, RolloutSpec, SolutionBlueprint,
    SolutionBlueprintSpec, SolutionBlueprintStatus,
};
pub use condition::{ConditionSpec, merge_conditions};
pub use stack::{
    AzureDefaults, Binding, BindingEnv, BindingStatus, Component, ComponentState, ComponentStatus, Expose, LocalRef,
    Port, Protocol, SolutionStack, SolutionStackSpec, SolutionStackStatus,
};

use kube::CustomResourceExt;

/// The CRDs this operator serves, as the multi-document YAML `citystack crds` prints: the
/// concatenation of [`crd_documents`].
///
/// Errors: only if serialisation fails, which would be a bug in the types.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    Ok(crd_documents()?.into_iter().map(|(_, yaml)| yaml).collect())
}

/// Each CRD as `(file name, YAML document starting with "---")`, in file-name order: the
/// files of `crds/` (`citystack crds --out-dir crds`).
///
/// Errors: only if serialisation fails, which would be a bug in the types.
pub fn crd_documents() -> Result<Vec<(String, String)>, serde_yaml_ng::Error> {
    let mut out = Vec::new();
    for crd in [AzureResource::crd(), SolutionBlueprint::crd(), SolutionStack::crd()] {
        let name = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
        let mut value = serde_json::to_value(&crd).map_err(<serde_yaml_ng::Error as serde::ser::Error>::custom)?;
        unwrap_descriptions(&mut value);
        out.push((name, format!("---\n{}", serde_yaml_ng::to_string(&value)?)));
    }
    out.sort();
    Ok(out)
}

/// Joins the hard line breaks that doc comments leave inside paragraphs, so `kubectl explain`
/// wraps descriptions itself; blank lines (paragraph breaks) stay.
fn unwrap_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = text.split("\n\n").map(|p| p.replace('\n', " ")).collect::<Vec<_>>().join("\n\n");
                    }
                    _ => unwrap_descriptions(child),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
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
