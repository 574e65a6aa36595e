//! Resolve: read what a stack's bindings refer to. Only reads.
//!
//! User Secrets are watched metadata-only (a change wakes the stack); their data is read with
//! a GET only when the Secret's resourceVersion differs from the one last hashed, and only its
//! hash and key names are kept: a cluster-wide cache of Secret data would cost memory and
//! widen what a compromised operator leaks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::api::{AzureResource, Binding, SolutionStack};
use crate::binding::{ResolvedBinding, data_hash};
use crate::error::{Category, Error, Result};
use crate::naming;

/// The state of one binding after resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingState {
    /// The bound Secret exists with every key the binding maps.
    Ready(ResolvedBinding),
    /// Being provisioned (an Azure binding whose AzureResource is not Ready yet); components
    /// using it wait.
    Pending {
        /// What it waits for, e.g. `AzureResource traffic-archive: provisioningState Creating`.
        message: String,
    },
    /// Not usable yet; components using it wait. `message` names the Secret or key.
    NotReady {
        /// Why (e.g. `MissingReference`).
        category: Category,
        /// Which Secret or key is missing; never a value.
        message: String,
    },
    /// The AzureResource behind it is Stalled (a person must act): the stack is Stalled too.
    Stalled {
        /// The AzureResource's Stalled reason (PascalCase, e.g. `AzureRejected`).
        reason: String,
        /// Names the AzureResource, its reason and message (with the ARM code).
        message: String,
    },
}

/// What a Secret's data looked like at one resourceVersion: its hash and key names.
#[derive(Clone, Debug)]
struct Hashed {
    resource_version: String,
    hash: String,
    keys: BTreeSet<String>,
}

/// Reads bound Secrets through a metadata cache and a per-resourceVersion hash cache.
pub struct SecretResolver {
    client: Client,
    metadata: Store<PartialObjectMeta<Secret>>,
    hashed: Mutex<HashMap<ObjectRef<PartialObjectMeta<Secret>>, Hashed>>,
}

impl SecretResolver {
    /// A resolver over the metadata-only Secret cache `metadata`.
    pub fn new(client: Client, metadata: Store<PartialObjectMeta<Secret>>) -> Self {
        Self { client, metadata, hashed: Mutex::new(HashMap::new()) }
    }

    /// Resolves every binding of `stack`, by binding name. Azure bindings are looked up in
    /// `azure` (the AzureResource cache): Ready with a binding Secret, or Pending.
    ///
    /// Errors: `KubeApi` when a GET of a Secret fails for a reason other than 404.
    pub async fn resolve(
        &self,
        stack: &SolutionStack,
        azure: &Store<AzureResource>,
    ) -> Result<BTreeMap<String, BindingState>> {
        let namespace = stack.namespace().unwrap_or_default();
        let mut out = BTreeMap::new();
        for binding in &stack.spec.bindings {
            let state = match (&binding.secret_ref, azure_resource_name(stack, binding)) {
                (Some(secret), _) => self.resolve_secret(&namespace, binding, &secret.name).await?,
                (None, Some(name)) => match azure.get(&ObjectRef::new(&name).within(&namespace)) {
                    None if binding.azure.is_some() => {
                        BindingState::Pending { message: format!("AzureResource {name} is being created") }
                    }
                    None => BindingState::NotReady {
                        category: Category::MissingReference,
                        message: format!("AzureResource {name} not found in namespace {namespace}"),
                    },
                    Some(resource) => match azure_binding_secret(&resource) {
                        Some(secret) => match self.resolve_secret(&namespace, binding, &secret).await? {
                            // The AzureResource writes its Secret before it turns Ready; a
                            // missing one is a moment's lag, not the user's mistake.
                            BindingState::NotReady { message, .. } => BindingState::Pending { message },
                            state => state,
                        },
                        None => match azure_stalled(&resource) {
                            Some((reason, detail)) => BindingState::Stalled {
                                reason,
                                message: format!("AzureResource {name} is Stalled: {detail}"),
                            },
                            None => BindingState::Pending {
                                message: format!("AzureResource {name}: {}", azure_not_ready(&resource)),
                            },
                        },
                    },
                },
                (None, None) => BindingState::NotReady {
                    category: Category::InvalidSpec,
                    message: format!("spec.bindings[{}] has no source", binding.name),
                },
            };
            out.insert(binding.name.clone(), state);
        }
        Ok(out)
    }

    async fn resolve_secret(&self, namespace: &str, binding: &Binding, name: &str) -> Result<BindingState> {
        let key = ObjectRef::<PartialObjectMeta<Secret>>::new(name).within(namespace);
        let missing = || BindingState::NotReady {
            category: Category::MissingReference,
            message: format!("Secret {name} not found in namespace {namespace}"),
        };
        let Some(meta) = self.metadata.get(&key) else {
            self.forget(&key);
            return Ok(missing());
        };
        let version = meta.resource_version().unwrap_or_default();
        let hashed = match self.cached(&key, &version) {
            Some(hashed) => hashed,
            None => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                let Some(secret) = api.get_opt(name).await.map_err(|e| Error::kube(format!("get Secret {name}"), e))?
                else {
                    self.forget(&key);
                    return Ok(missing());
                };
                let mut data = secret.data.unwrap_or_default();
                // stringData is write-only, but a Secret read back never has it; merge anyway
                // so the hash is right for any client that returns it.
                for (k, v) in secret.string_data.unwrap_or_default() {
                    data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
                }
                let hashed = Hashed {
                    resource_version: secret.metadata.resource_version.unwrap_or_default(),
                    hash: data_hash(&data),
                    keys: data.keys().cloned().collect(),
                };
                if let Ok(mut cache) = self.hashed.lock() {
                    cache.insert(key, hashed.clone());
                }
                hashed
            }
        };
        let absent: Vec<String> = binding
            .env
            .iter()
            .filter(|m| !hashed.keys.contains(&m.key))
            .map(|m| format!("{} (for env {})", m.key, m.name))
            .collect();
        if !absent.is_empty() {
            return Ok(BindingState::NotReady {
                category: Category::MissingReference,
                message: format!("Secret {name} has no key {}", absent.join(", ")),
            });
        }
        Ok(BindingState::Ready(ResolvedBinding {
            name: binding.name.clone(),
            secret_name: name.to_owned(),
            data_hash: Some(hashed.hash),
        }))
    }

    fn cached(&self, key: &ObjectRef<PartialObjectMeta<Secret>>, version: &str) -> Option<Hashed> {
        let cache = self.hashed.lock().ok()?;
        cache.get(key).filter(|h| h.resource_version == version).cloned()
    }

    fn forget(&self, key: &ObjectRef<PartialObjectMeta<Secret>>) {
        if let Ok(mut cache) = self.hashed.lock() {
            cache.remove(key);
        }
    }
}

/// The AzureResource an Azure binding uses: `<stack>-<binding>` for inline `azure`, the
/// referenced name for `azureResourceRef`; `None` for other sources.
pub fn azure_resource_name(stack: &SolutionStack, binding: &Binding) -> Option<String> {
    match (&binding.azure, &binding.azure_resource_ref) {
        (Some(_), _) => Some(naming::child_name(&stack.name_any(), &binding.name)),
        (None, Some(reference)) => Some(reference.name.clone()),
        (None, None) => None,
    }
}

/// The binding Secret of a Ready AzureResource (Ready=True at its current generation).
fn azure_binding_secret(resource: &AzureResource) -> Option<String> {
    let status = resource.status.as_ref()?;
    let current = status.observed_generation == resource.metadata.generation;
    let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
    if current && ready { status.binding.as_ref().map(|b| b.name.clone()) } else { None }
}

/// The Stalled condition of an AzureResource at its current generation: its reason (an
/// error category, e.g. `AzureRejected`) and message (which carries the ARM code).
fn azure_stalled(resource: &AzureResource) -> Option<(String, String)> {
    let status = resource.status.as_ref()?;
    if status.observed_generation != resource.metadata.generation {
        return None;
    }
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled" && c.status == "True")?;
    let reason: String = stalled.reason.chars().filter(char::is_ascii_alphanumeric).take(64).collect();
    let reason = if reason.starts_with(|c: char| c.is_ascii_alphabetic()) { reason } else { "Stalled".into() };
    Some((reason.clone(), format!("{reason}: {}", stalled.message)))
}

/// Why an AzureResource is not Ready: its Ready condition's reason and message.
fn azure_not_ready(resource: &AzureResource) -> String {
    resource
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| if c.message.is_empty() { c.reason.clone() } else { format!("{}: {}", c.reason, c.message) })
        .unwrap_or_else(|| "not reconciled yet".into())
}

/// The bindings that are ready, by name (the input `render` projects).
pub fn ready_bindings(states: &BTreeMap<String, BindingState>) -> BTreeMap<String, ResolvedBinding> {
    states
        .iter()
        .filter_map(|(name, state)| match state {
            BindingState::Ready(resolved) => Some((name.clone(), resolved.clone())),
            BindingState::NotReady { .. } | BindingState::Pending { .. } | BindingState::Stalled { .. } => None,
        })
        .collect()
}
