//! Workload projection of bindings, per the Service Binding for Kubernetes specification
//! (servicebinding.io, "Workload Projection"): each bound Secret is mounted read-only as a
//! folder `$SERVICE_BINDING_ROOT/<binding>`, `SERVICE_BINDING_ROOT` is set in the container,
//! and chosen keys are also injected as environment variables. A hash of the bound data on
//! the pod template makes a changed Secret roll the pods once, and an unchanged one never.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount};
use sha2::{Digest, Sha256};

use crate::api::Binding;
use crate::naming;

/// Value of `SERVICE_BINDING_ROOT` and the mount root of every binding.
pub const SERVICE_BINDING_ROOT: &str = "/bindings";

/// A binding whose Secret was found: what projection needs to know, and nothing secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedBinding {
    /// Binding name (the folder under `/bindings`).
    pub name: String,
    /// The Secret to mount.
    pub secret_name: String,
    /// Hash of the Secret's data ([`data_hash`]); `None` offline, where data is unknown.
    pub data_hash: Option<String>,
}

/// The projection of a component's bindings into its pod template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Projection {
    /// One read-only Secret volume per binding, named after the binding.
    pub volumes: Vec<Volume>,
    /// Mounts at `/bindings/<binding>`.
    pub mounts: Vec<VolumeMount>,
    /// `SERVICE_BINDING_ROOT`, then the bindings' `env` mappings as secretKeyRef variables.
    pub env: Vec<EnvVar>,
    /// Hash over the bound data, for the pod template annotation; `None` without bindings.
    pub hash: Option<String>,
}

/// Projects `uses` (binding names, in the component's order) into a pod template. Bindings
/// missing from `resolved` are skipped: the caller holds such a component back.
pub fn project(uses: &[String], bindings: &[Binding], resolved: &BTreeMap<String, ResolvedBinding>) -> Projection {
    let mut projection = Projection::default();
    let mut hashed = BTreeMap::new();
    let used: BTreeSet<&str> = uses.iter().map(String::as_str).collect();
    // Spec order of bindings (not `uses` order) keeps the output stable when uses is reordered.
    for binding in bindings.iter().filter(|b| used.contains(b.name.as_str())) {
        let Some(found) = resolved.get(&binding.name) else {
            continue;
        };
        projection.volumes.push(Volume {
            name: binding.name.clone(),
            secret: Some(SecretVolumeSource { secret_name: Some(found.secret_name.clone()), ..Default::default() }),
            ..Default::default()
        });
        projection.mounts.push(VolumeMount {
            name: binding.name.clone(),
            mount_path: format!("{SERVICE_BINDING_ROOT}/{}", binding.name),
            read_only: Some(true),
            ..Default::default()
        });
        for mapping in &binding.env {
            projection.env.push(EnvVar {
                name: mapping.name.clone(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: found.secret_name.clone(),
                        key: mapping.key.clone(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        hashed.insert(binding.name.as_str(), (found.secret_name.as_str(), found.data_hash.as_deref()));
    }
    if !projection.volumes.is_empty() {
        projection.env.insert(
            0,
            EnvVar {
                name: "SERVICE_BINDING_ROOT".into(),
                value: Some(SERVICE_BINDING_ROOT.into()),
                ..Default::default()
            },
        );
        if hashed.values().all(|(_, h)| h.is_some()) {
            let mut input = String::new();
            for (name, (secret, hash)) in &hashed {
                input.push_str(&format!("{name}\0{secret}\0{}\n", hash.unwrap_or_default()));
            }
            projection.hash = Some(naming::short_hash(input.as_bytes()));
        }
    }
    projection
}

/// SHA-256 (hex) over a Secret's data, keys sorted, so equal data gives an equal hash. The
/// hash is one-way; it is the only trace of the values the operator keeps.
pub fn data_hash(data: &BTreeMap<String, ByteString>) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in data {
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key.as_bytes());
        hasher.update((value.0.len() as u64).to_be_bytes());
        hasher.update(&value.0);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BindingEnv, LocalRef};

    fn binding(name: &str, secret: &str) -> Binding {
        Binding {
            name: name.into(),
            secret_ref: Some(LocalRef { name: secret.into() }),
            azure: None,
            azure_resource_ref: None,
            env: vec![BindingEnv { name: "DB_HOST".into(), key: "host".into() }],
        }
    }

    fn resolved(name: &str, secret: &str, hash: &str) -> (String, ResolvedBinding) {
        (name.into(), ResolvedBinding { name: name.into(), secret_name: secret.into(), data_hash: Some(hash.into()) })
    }

    #[test]
    fn projects_mount_env_and_root() {
        let bindings = vec![binding("db", "db-creds")];
        let resolved = BTreeMap::from([resolved("db", "db-creds", "h1")]);
        let p = project(&["db".into()], &bindings, &resolved);
        assert_eq!(p.mounts[0].mount_path, "/bindings/db");
        assert_eq!(p.mounts[0].read_only, Some(true));
        assert_eq!(p.env[0].name, "SERVICE_BINDING_ROOT");
        assert_eq!(
            p.env[1].value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).map(|s| s.key.as_str()),
            Some("host")
        );
        assert!(p.hash.is_some());
    }

    #[test]
    fn hash_changes_only_with_data() {
        let bindings = vec![binding("db", "db-creds")];
        let a = project(&["db".into()], &bindings, &BTreeMap::from([resolved("db", "db-creds", "h1")]));
        let b = project(&["db".into()], &bindings, &BTreeMap::from([resolved("db", "db-creds", "h1")]));
        let c = project(&["db".into()], &bindings, &BTreeMap::from([resolved("db", "db-creds", "h2")]));
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
    }

    #[test]
    fn data_hash_separates_keys_from_values() {
        let one = BTreeMap::from([("ab".to_string(), ByteString(b"c".to_vec()))]);
        let two = BTreeMap::from([("a".to_string(), ByteString(b"bc".to_vec()))]);
        assert_ne!(data_hash(&one), data_hash(&two));
    }

    #[test]
    fn no_bindings_no_projection() {
        let p = project(&[], &[], &BTreeMap::new());
        assert_eq!(p, Projection::default());
    }
}
