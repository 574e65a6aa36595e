//! Which Azure credential an AzureResource uses, in order: its `credentialRef` Secret; else
//! the namespace's `citystack-azure` Secret; else the operator's own identity (chosen by
//! `--azure-identity`, never by probing), and that only in namespaces matching
//! `--trusted-namespaces`. Secrets hold AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET
//! and optionally AZURE_SUBSCRIPTION_ID; tokens come from azure_identity's credentials, never
//! from hand-written OAuth.

use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret as AzureSecret, TokenCredential};
use azure_core::http::ClientOptions;
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::azure::arm::{Arm, ArmShared};
use crate::azure::cloud::{Cloud, IdentityKind};

/// Name of the per-namespace default credential Secret.
pub const DEFAULT_SECRET: &str = "citystack-azure";

/// Why no credential could be used. Messages name the Secret or key, never a value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The Secret named is missing.
    #[error("credential Secret {0} not found")]
    MissingSecret(String),
    /// The Secret lacks a key.
    #[error("credential Secret {secret} has no key {key}")]
    MissingKey {
        /// The Secret.
        secret: String,
        /// The key.
        key: &'static str,
    },
    /// Neither Secret exists and the operator's identity may not be used here.
    #[error(
        "no credential: namespace {0} has no {DEFAULT_SECRET} Secret (nor spec.credentialRef), and the operator's own identity is only for namespaces matching --trusted-namespaces"
    )]
    Untrusted(String),
    /// Neither Secret exists and the operator has no identity.
    #[error(
        "no credential: namespace {0} has no {DEFAULT_SECRET} Secret (nor spec.credentialRef), and the operator runs with --azure-identity none"
    )]
    NoIdentity(String),
    /// The credential could not be constructed.
    #[error("credential from {source_name}: {message}")]
    Invalid {
        /// Where it came from.
        source_name: String,
        /// Why it failed.
        message: String,
    },
    /// Reading a Secret or Namespace failed.
    #[error("reading {what}: {source}")]
    Kube {
        /// What was read.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// A usable credential: its ARM client, the subscription it names (if any), and where it came
/// from (for conditions).
pub struct Resolved {
    /// ARM client authenticated with this credential.
    pub arm: Arm,
    /// AZURE_SUBSCRIPTION_ID of the Secret, if set.
    pub subscription: Option<String>,
    /// `Secret <ns>/<name>` or `operator identity`.
    pub source: String,
    /// Whether this is the operator's own identity.
    pub operator_identity: bool,
}

/// Resolves credentials for AzureResources.
pub struct Credentials {
    client: Client,
    shared: ArmShared,
    cloud: Cloud,
    identity: Option<Arc<dyn TokenCredential>>,
    trusted_selector: String,
}

impl Credentials {
    /// Builds the operator's own identity (if any) and the resolver.
    ///
    /// Errors: the identity cannot be constructed (e.g. workload identity without its
    /// environment variables).
    pub fn new(
        client: Client,
        shared: ArmShared,
        cloud: Cloud,
        identity: IdentityKind,
        trusted_selector: &str,
    ) -> Result<Self, CredentialError> {
        let options = client_options(&shared, &cloud);
        let invalid = |e: azure_core::Error| CredentialError::Invalid {
            source_name: "operator identity".into(),
            message: e.to_string(),
        };
        let identity: Option<Arc<dyn TokenCredential>> = match identity {
            IdentityKind::None => None,
            IdentityKind::Workload => Some(
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions { client_options: options },
                    ..Default::default()
                }))
                .map_err(invalid)?,
            ),
            IdentityKind::Managed => Some(
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    client_options: options,
                    ..Default::default()
                }))
                .map_err(invalid)?,
            ),
            IdentityKind::ClientSecret => {
                let var = |k: &str| {
                    std::env::var(k).map_err(|_| CredentialError::Invalid {
                        source_name: "environment".into(),
                        message: format!("{k} is not set"),
                    })
                };
                Some(
                    ClientSecretCredential::new(
                        &var("AZURE_TENANT_ID")?,
                        var("AZURE_CLIENT_ID")?,
                        AzureSecret::new(var("AZURE_CLIENT_SECRET")?),
                        Some(ClientSecretCredentialOptions { client_options: options }),
                    )
                    .map_err(invalid)?,
                )
            }
        };
        Ok(Self { client, shared, cloud, identity, trusted_selector: trusted_selector.to_owned() })
    }

    /// Whether `namespace` matches `--trusted-namespaces` (evaluated by the API server, so the
    /// full label-selector syntax works). An empty selector trusts no namespace.
    ///
    /// Errors: the Namespace list fails.
    pub async fn trusted(&self, namespace: &str) -> Result<bool, CredentialError> {
        if self.trusted_selector.trim().is_empty() {
            return Ok(false);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let params = ListParams::default().labels(&self.trusted_selector).fields(&format!("metadata.name={namespace}"));
        let found = api
            .list_metadata(&params)
            .await
            .map_err(|source| CredentialError::Kube { what: "Namespaces".into(), source })?;
        Ok(!found.items.is_empty())
    }

    /// The credential for an object in `namespace` with optional `credential_ref`.
    ///
    /// Errors: [`CredentialError`], naming what is missing.
    pub async fn resolve(&self, namespace: &str, credential_ref: Option<&str>) -> Result<Resolved, CredentialError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let name = credential_ref.unwrap_or(DEFAULT_SECRET);
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(|source| CredentialError::Kube { what: format!("Secret {name}"), source })?;
        match (secret, credential_ref) {
            (Some(secret), _) => self.credential_of(namespace, &secret),
            (None, Some(explicit)) => Err(CredentialError::MissingSecret(explicit.to_owned())),
            (None, None) => {
                let Some(identity) = &self.identity else {
                    return Err(CredentialError::NoIdentity(namespace.to_owned()));
                };
                if !self.trusted(namespace).await? {
                    return Err(CredentialError::Untrusted(namespace.to_owned()));
                }
                Ok(Resolved {
                    arm: self.shared.client("operator-identity", identity.clone()),
                    subscription: None,
                    source: "operator identity".into(),
                    operator_identity: true,
                })
            }
        }
    }

    fn credential_of(&self, namespace: &str, secret: &Secret) -> Result<Resolved, CredentialError> {
        let name = secret.name_any();
        let data = secret.data.clone().unwrap_or_default();
        let value = |key: &'static str| -> Result<String, CredentialError> {
            data.get(key)
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(CredentialError::MissingKey { secret: name.clone(), key })
        };
        let (tenant, client_id, client_secret) =
            (value("AZURE_TENANT_ID")?, value("AZURE_CLIENT_ID")?, value("AZURE_CLIENT_SECRET")?);
        let subscription = value("AZURE_SUBSCRIPTION_ID").ok();
        let source = format!("Secret {namespace}/{name}");
        // One credential per Secret version: tokens are cached in it across reconciles, and a
        // rotated Secret gets a fresh one.
        let key = format!("{namespace}/{name}/{}", secret.resource_version().unwrap_or_default());
        let credential = ClientSecretCredential::new(
            &tenant,
            client_id,
            AzureSecret::new(client_secret),
            Some(ClientSecretCredentialOptions { client_options: client_options(&self.shared, &self.cloud) }),
        )
        .map_err(|e| CredentialError::Invalid { source_name: source.clone(), message: e.to_string() })?;
        Ok(Resolved { arm: self.shared.client(&key, credential), subscription, source, operator_identity: false })
    }
}

fn client_options(shared: &ArmShared, cloud: &Cloud) -> ClientOptions {
    let mut custom = CustomConfiguration::default();
    custom.authority_host = cloud.authority_host.clone();
    let cloud: Arc<CloudConfiguration> = Arc::new(custom.into());
    ClientOptions { transport: Some(shared.transport().clone()), cloud: Some(cloud), ..Default::default() }
}
