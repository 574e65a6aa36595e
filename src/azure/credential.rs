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

/// Why no credential could be used. Messages name the Secret, key or variable, never a value:
/// not even text from azure_identity or azure_core, which echo what they were given (an
/// invalid tenant id is repeated in their error, and with AZURE_TENANT_ID and
/// AZURE_CLIENT_SECRET swapped that is the client secret).
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
    /// The credential is malformed or could not be constructed, e.g.
    /// `credential Secret ns/name: AZURE_TENANT_ID is not a valid tenant id (...)`.
    #[error("credential {source_name}: {message}")]
    Invalid {
        /// Where it came from: `Secret <ns>/<name>`, `operator identity`.
        source_name: String,
        /// Why it failed: fixed text (hence `'static`), never a value or a library's message.
        message: &'static str,
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

/// Shape of AZURE_TENANT_ID.
const BAD_TENANT: &str = "AZURE_TENANT_ID is not a valid tenant id (expected a GUID or a domain name such as contoso.onmicrosoft.com; are two keys swapped?)";
/// Shape of AZURE_CLIENT_ID.
const BAD_CLIENT_ID: &str =
    "AZURE_CLIENT_ID is not a valid client id (expected the application's GUID; are two keys swapped?)";
/// Shape of AZURE_SUBSCRIPTION_ID.
const BAD_SUBSCRIPTION: &str =
    "AZURE_SUBSCRIPTION_ID is not a valid subscription id (expected a GUID; are two keys swapped?)";

/// Whether `value` is a GUID in its usual text form, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`
/// (hex digits, either case).
pub fn is_guid(value: &str) -> bool {
    value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Whether `value` can be an Entra tenant id: a GUID, or a DNS domain name (at most 253
/// bytes; at least two dot-separated labels of 1 to 63 ASCII letters, digits or inner
/// hyphens; an alphabetic top-level label), e.g. `contoso.onmicrosoft.com`.
pub fn is_tenant_id(value: &str) -> bool {
    if is_guid(value) {
        return true;
    }
    let labels: Vec<&str> = value.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    value.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// A usable credential: its ARM client, the subscription and tenant it names (if any), the
/// principal it acts as, and where it came from (for conditions). Every field is free of
/// secret values.
pub struct Resolved {
    /// ARM client authenticated with this credential.
    pub arm: Arm,
    /// AZURE_SUBSCRIPTION_ID of the Secret (a GUID), if set.
    pub subscription: Option<String>,
    /// The credential's tenant: the Secret's AZURE_TENANT_ID (a GUID or a domain name); for
    /// the operator's identity, the AZURE_TENANT_ID environment variable when set and well
    /// formed.
    pub tenant: Option<String>,
    /// Who the credential acts as, for keying per-principal state such as the ARM budget:
    /// `<tenant>/<client id>` in lower case for a Secret, `operator-identity` for the
    /// operator's own identity. Not secret.
    pub principal: String,
    /// `Secret <ns>/<name>` or `operator identity`.
    pub source: String,
    /// Whether this is the operator's own identity.
    pub operator_identity: bool,
    /// The Secret it came from: its name, and whether it already carries
    /// [`crate::azure::hold::CREDENTIAL_FINALIZER`]. `None` for the operator's identity.
    pub secret: Option<(String, bool)>,
}

/// Principal of the operator's own identity (see [`Resolved::principal`]).
pub const OPERATOR_PRINCIPAL: &str = "operator-identity";

/// Resolves credentials for AzureResources.
pub struct Credentials {
    client: Client,
    shared: ArmShared,
    cloud: Cloud,
    identity: Option<Arc<dyn TokenCredential>>,
    identity_tenant: Option<String>,
    trusted_selector: String,
}

impl Credentials {
    /// Builds the operator's own identity (if any) and the resolver. The identity's settings
    /// come from the process environment (AZURE_TENANT_ID, AZURE_CLIENT_ID,
    /// AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE).
    ///
    /// Errors: [`CredentialError::Invalid`] when the identity cannot be constructed (e.g.
    /// workload identity without its environment variables, or a malformed tenant or client
    /// id); the message names the variable, never its value.
    pub fn new(
        client: Client,
        shared: ArmShared,
        cloud: Cloud,
        identity: IdentityKind,
        trusted_selector: &str,
    ) -> Result<Self, CredentialError> {
        let options = client_options(&shared, &cloud);
        let (identity, identity_tenant) = operator_identity(identity, options, |k| std::env::var(k).ok())?;
        Ok(Self { client, shared, cloud, identity, identity_tenant, trusted_selector: trusted_selector.to_owned() })
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
    /// Errors: [`CredentialError`], naming what is missing or malformed.
    pub async fn resolve(&self, namespace: &str, credential_ref: Option<&str>) -> Result<Resolved, CredentialError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let name = credential_ref.unwrap_or(DEFAULT_SECRET);
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(|source| CredentialError::Kube { what: format!("Secret {name}"), source })?;
        if secret.is_none() {
            // A deleted Secret's client (and its cached token) goes with it.
            self.shared.forget(&format!("{namespace}/{name}"));
        }
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
                    arm: self.shared.client(OPERATOR_PRINCIPAL, OPERATOR_PRINCIPAL, identity.clone()),
                    subscription: None,
                    tenant: self.identity_tenant.clone(),
                    principal: OPERATOR_PRINCIPAL.into(),
                    source: "operator identity".into(),
                    operator_identity: true,
                    secret: None,
                })
            }
        }
    }

    fn credential_of(&self, namespace: &str, secret: &Secret) -> Result<Resolved, CredentialError> {
        let name = secret.name_any();
        let source = format!("Secret {namespace}/{name}");
        let empty = Default::default();
        let fields = SecretFields::parse(&source, &name, secret.data.as_ref().unwrap_or(&empty))?;
        // One client per Secret, replaced when the Secret's version changes: tokens are cached
        // in it across reconciles, and a rotated Secret gets a fresh one.
        let key = format!("{namespace}/{name}/{}", secret.resource_version().unwrap_or_default());
        let principal = fields.principal();
        let credential = ClientSecretCredential::new(
            &fields.tenant,
            fields.client_id,
            AzureSecret::new(fields.client_secret),
            Some(ClientSecretCredentialOptions { client_options: client_options(&self.shared, &self.cloud) }),
        )
        // azure_identity's message may quote the values; only fixed text leaves here.
        .map_err(|_| CredentialError::Invalid {
            source_name: source.clone(),
            message: "the client-secret credential could not be built from AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
        })?;
        Ok(Resolved {
            arm: self.shared.client(&key, &principal, credential),
            subscription: fields.subscription,
            tenant: Some(fields.tenant),
            principal,
            source,
            operator_identity: false,
            secret: Some((
                name.clone(),
                secret.finalizers().iter().any(|f| f == crate::azure::hold::CREDENTIAL_FINALIZER),
            )),
        })
    }
}

/// The keys of a credential Secret, trimmed and checked for shape.
struct SecretFields {
    tenant: String,
    client_id: String,
    client_secret: String,
    subscription: Option<String>,
}

impl SecretFields {
    /// Reads and checks the keys of Secret `name` (described as `source` in errors).
    fn parse(
        source: &str,
        name: &str,
        data: &std::collections::BTreeMap<String, k8s_openapi::ByteString>,
    ) -> Result<Self, CredentialError> {
        let value = |key: &'static str| -> Option<String> {
            data.get(key)
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required =
            |key: &'static str| value(key).ok_or(CredentialError::MissingKey { secret: name.to_owned(), key });
        let invalid = |message: &'static str| CredentialError::Invalid { source_name: source.to_owned(), message };
        let (tenant, client_id, client_secret) =
            (required("AZURE_TENANT_ID")?, required("AZURE_CLIENT_ID")?, required("AZURE_CLIENT_SECRET")?);
        // Checked here, before azure_identity sees them: it quotes a tenant id it refuses, and
        // Entra or ARM may quote a client id or subscription they do not know.
        if !is_tenant_id(&tenant) {
            return Err(invalid(BAD_TENANT));
        }
        if !is_guid(&client_id) {
            return Err(invalid(BAD_CLIENT_ID));
        }
        let subscription = value("AZURE_SUBSCRIPTION_ID");
        if subscription.as_deref().is_some_and(|s| !is_guid(s)) {
            return Err(invalid(BAD_SUBSCRIPTION));
        }
        Ok(Self { tenant, client_id, client_secret, subscription })
    }

    /// `<tenant>/<client id>`, lower case.
    fn principal(&self) -> String {
        format!("{}/{}", self.tenant, self.client_id).to_ascii_lowercase()
    }
}

/// The operator's identity (if any) and its tenant.
type OperatorIdentity = (Option<Arc<dyn TokenCredential>>, Option<String>);

/// The operator's own identity of `kind` and its tenant (AZURE_TENANT_ID when set and well
/// formed), with settings read through `env`. Tenant and client id are checked for shape
/// before azure_identity sees them, and its errors are replaced by fixed text.
fn operator_identity(
    kind: IdentityKind,
    options: ClientOptions,
    env: impl Fn(&str) -> Option<String>,
) -> Result<OperatorIdentity, CredentialError> {
    let invalid = |message: &'static str| CredentialError::Invalid { source_name: "operator identity".into(), message };
    let var = |key: &'static str, missing: &'static str| {
        env(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).ok_or_else(|| invalid(missing))
    };
    let tenant = env("AZURE_TENANT_ID").map(|v| v.trim().to_owned()).filter(|v| is_tenant_id(v));
    let checked = || -> Result<(String, String), CredentialError> {
        let tenant_value = var("AZURE_TENANT_ID", "AZURE_TENANT_ID is not set")?;
        if !is_tenant_id(&tenant_value) {
            return Err(invalid(BAD_TENANT));
        }
        let client_id = var("AZURE_CLIENT_ID", "AZURE_CLIENT_ID is not set")?;
        if !is_guid(&client_id) {
            return Err(invalid(BAD_CLIENT_ID));
        }
        Ok((tenant_value, client_id))
    };
    let identity: Option<Arc<dyn TokenCredential>> = match kind {
        IdentityKind::None => None,
        IdentityKind::Workload => {
            let (tenant_id, client_id) = checked()?;
            let token_file = var("AZURE_FEDERATED_TOKEN_FILE", "AZURE_FEDERATED_TOKEN_FILE is not set")?;
            Some(
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions { client_options: options },
                    client_id: Some(client_id),
                    tenant_id: Some(tenant_id),
                    token_file_path: Some(token_file.into()),
                }))
                .map_err(|_| {
                    invalid(
                        "workload identity could not be built (is the file AZURE_FEDERATED_TOKEN_FILE names readable?)",
                    )
                })?,
            )
        }
        IdentityKind::Managed => Some(
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                client_options: options,
                ..Default::default()
            }))
            .map_err(|_| invalid("managed identity could not be built (is a managed identity endpoint available?)"))?,
        ),
        IdentityKind::ClientSecret => {
            let (tenant_id, client_id) = checked()?;
            let secret = var("AZURE_CLIENT_SECRET", "AZURE_CLIENT_SECRET is not set")?;
            Some(
                ClientSecretCredential::new(
                    &tenant_id,
                    client_id,
                    AzureSecret::new(secret),
                    Some(ClientSecretCredentialOptions { client_options: options }),
                )
                .map_err(|_| {
                    invalid("the client-secret credential could not be built from AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET")
                })?,
            )
        }
    };
    Ok((identity, tenant))
}

fn client_options(shared: &ArmShared, cloud: &Cloud) -> ClientOptions {
    let mut custom = CustomConfiguration::default();
    custom.authority_host = cloud.authority_host.clone();
    let cloud: Arc<CloudConfiguration> = Arc::new(custom.into());
    ClientOptions { transport: Some(shared.transport().clone()), cloud: Some(cloud), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::pin::Pin;

    use azure_core::http::headers::Headers;
    use azure_core::http::{AsyncRawResponse, Body, HttpClient, Request, StatusCode, Transport};
    use k8s_openapi::ByteString;

    use super::*;
    use crate::telemetry::Metrics;

    /// A value that must never appear in a message. Its characters are ones azure_identity
    /// accepts in a tenant id (letters, digits, hyphens), so only our own check stops it.
    const CANARY: &str = "CANARY-5ecret-7f3Qx9";
    /// A canary shaped like a real client secret (`~`, `_`, `.`).
    const CANARY_SECRET: &str = "CANARY-5ecret~Qx8_d.Zp41";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const CLIENT: &str = "0b5c8d2e-4f6a-4e1b-9c3d-7a8f9e0d1c2b";
    const SUBSCRIPTION: &str = "6f1c2a0e-3b7d-4c55-9a1e-2f5d7c9b0a11";

    /// An Entra token endpoint (and ARM) that refuses everything and echoes the request's URL
    /// and body (where the client secret is) in its error, as a careless server might.
    #[derive(Debug)]
    struct EchoingServer;

    impl HttpClient for EchoingServer {
        fn execute_request<'a, 'b, 'async_trait>(
            &'a self,
            request: &'b Request,
        ) -> Pin<Box<dyn Future<Output = azure_core::Result<AsyncRawResponse>> + Send + 'async_trait>>
        where
            'a: 'async_trait,
            'b: 'async_trait,
            Self: 'async_trait,
        {
            let body = match request.body() {
                Body::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => String::new(),
            };
            let echo = format!("AADSTS7000215: invalid request to {}: {body}", request.url());
            let json =
                serde_json::json!({"error": "invalid_client", "error_description": echo, "error_codes": [7000215]});
            Box::pin(async move {
                Ok(AsyncRawResponse::from_bytes(
                    StatusCode::Unauthorized,
                    Headers::new(),
                    json.to_string().into_bytes(),
                ))
            })
        }
    }

    /// A kube client whose API server answers 404 to everything.
    fn kube_client() -> Client {
        let service = tower::service_fn(|_request: http::Request<kube::client::Body>| async {
            let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
            http::Response::builder()
                .status(404)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.as_bytes().to_vec()))
        });
        Client::new(service, "default")
    }

    fn cloud() -> Cloud {
        Cloud {
            arm_endpoint: "https://arm.test".into(),
            authority_host: "https://login.test".into(),
            scope: "https://arm.test/.default".into(),
        }
    }

    fn credentials() -> Credentials {
        let transport = Transport::new(Arc::new(EchoingServer));
        let shared = ArmShared::new(transport, "https://arm.test", "https://arm.test/.default", 100, Metrics::new());
        Credentials::new(kube_client(), shared, cloud(), IdentityKind::None, "")
            .unwrap_or_else(|e| panic!("resolver: {e}"))
    }

    fn secret(name: &str, version: &str, data: &[(&str, &str)]) -> Secret {
        let data: BTreeMap<String, ByteString> =
            data.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect();
        let mut secret = Secret { data: Some(data), ..Default::default() };
        secret.metadata.name = Some(name.into());
        secret.metadata.namespace = Some("ns".into());
        secret.metadata.resource_version = Some(version.into());
        secret
    }

    fn assert_clean(what: &str, error: &impl std::fmt::Debug, display: String) {
        for canary in [CANARY, CANARY_SECRET, "CANARY", "5ecret"] {
            assert!(!display.contains(canary), "{what}: Display holds the canary: {display}");
            let debug = format!("{error:?}");
            assert!(!debug.contains(canary), "{what}: Debug holds the canary: {debug}");
        }
    }

    #[tokio::test]
    async fn misplaced_secrets_never_reach_the_error() {
        let credentials = credentials();
        // (what, Secret data, expected message)
        type Case = (&'static str, [(&'static str, &'static str); 4], &'static str);
        let cases: Vec<Case> = vec![
            (
                "tenant and secret swapped",
                [
                    ("AZURE_TENANT_ID", CANARY),
                    ("AZURE_CLIENT_ID", CLIENT),
                    ("AZURE_CLIENT_SECRET", TENANT),
                    ("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION),
                ],
                "AZURE_TENANT_ID is not a valid tenant id",
            ),
            (
                "secret-shaped tenant",
                [
                    ("AZURE_TENANT_ID", CANARY_SECRET),
                    ("AZURE_CLIENT_ID", CLIENT),
                    ("AZURE_CLIENT_SECRET", TENANT),
                    ("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION),
                ],
                "AZURE_TENANT_ID is not a valid tenant id",
            ),
            (
                "client id and secret swapped",
                [
                    ("AZURE_TENANT_ID", TENANT),
                    ("AZURE_CLIENT_ID", CANARY_SECRET),
                    ("AZURE_CLIENT_SECRET", CLIENT),
                    ("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION),
                ],
                "AZURE_CLIENT_ID is not a valid client id",
            ),
            (
                "subscription and secret swapped",
                [
                    ("AZURE_TENANT_ID", TENANT),
                    ("AZURE_CLIENT_ID", CLIENT),
                    ("AZURE_CLIENT_SECRET", SUBSCRIPTION),
                    ("AZURE_SUBSCRIPTION_ID", CANARY),
                ],
                "AZURE_SUBSCRIPTION_ID is not a valid subscription id",
            ),
            (
                "canary everywhere",
                [
                    ("AZURE_TENANT_ID", CANARY),
                    ("AZURE_CLIENT_ID", CANARY),
                    ("AZURE_CLIENT_SECRET", CANARY),
                    ("AZURE_SUBSCRIPTION_ID", CANARY),
                ],
                "AZURE_TENANT_ID is not a valid tenant id",
            ),
        ];
        for (what, data, expected) in cases {
            let result = credentials.credential_of("ns", &secret("citystack-azure", "1", &data));
            let Err(error) = result else { panic!("{what}: a misplaced secret was accepted") };
            let display = error.to_string();
            assert!(display.starts_with("credential Secret ns/citystack-azure: "), "{what}: {display}");
            assert!(display.contains(expected), "{what}: {display}");
            assert_clean(what, &error, display);
        }
        assert_eq!(credentials.shared.cached_clients(), 0);
    }

    #[tokio::test]
    async fn a_refused_secret_never_reaches_the_arm_error() {
        let credentials = credentials();
        let data = [
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_CLIENT_SECRET", CANARY_SECRET),
            ("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION),
        ];
        let resolved = credentials
            .credential_of("ns", &secret("citystack-azure", "1", &data))
            .unwrap_or_else(|e| panic!("well-formed Secret refused: {e}"));
        assert_eq!(resolved.tenant.as_deref(), Some(TENANT));
        assert_eq!(resolved.principal, format!("{TENANT}/{CLIENT}"));
        assert_eq!(resolved.arm.principal(), resolved.principal);
        assert_eq!(resolved.subscription.as_deref(), Some(SUBSCRIPTION));
        assert_eq!(resolved.source, "Secret ns/citystack-azure");
        // The token request fails and the server echoes the client secret: the error is fixed text.
        let id = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg");
        let error = resolved.arm.get(SUBSCRIPTION, &id, "2024-03-01").await.err();
        let error = error.unwrap_or_else(|| panic!("a refused token still answered"));
        let display = error.to_string();
        assert!(matches!(error, crate::azure::arm::ArmError::Auth(_)), "{display}");
        assert!(display.contains("could not get a token"), "{display}");
        assert_clean("token refused", &error, display);
    }

    #[test]
    fn operator_identity_errors_are_value_free() {
        let options = || client_options(&credentials_shared(), &cloud());
        let env = |tenant: &'static str, client: &'static str, secret: &'static str| {
            move |key: &str| match key {
                "AZURE_TENANT_ID" => Some(tenant.to_owned()),
                "AZURE_CLIENT_ID" => Some(client.to_owned()),
                "AZURE_CLIENT_SECRET" => Some(secret.to_owned()),
                "AZURE_FEDERATED_TOKEN_FILE" => Some(format!("/nonexistent/{secret}")),
                _ => None,
            }
        };
        let cases = [
            (IdentityKind::ClientSecret, env(CANARY, CLIENT, TENANT), "AZURE_TENANT_ID is not a valid"),
            (IdentityKind::ClientSecret, env(TENANT, CANARY_SECRET, CLIENT), "AZURE_CLIENT_ID is not a valid"),
            (IdentityKind::Workload, env(CANARY_SECRET, CLIENT, TENANT), "AZURE_TENANT_ID is not a valid"),
            (IdentityKind::Workload, env(TENANT, CANARY, CLIENT), "AZURE_CLIENT_ID is not a valid"),
            (IdentityKind::Workload, env(TENANT, CLIENT, CANARY), "workload identity could not be built"),
        ];
        for (kind, env, expected) in cases {
            let Err(error) = operator_identity(kind, options(), env) else { panic!("{kind:?}: accepted") };
            let display = error.to_string();
            assert!(display.starts_with("credential operator identity: "), "{display}");
            assert!(display.contains(expected), "{kind:?}: {display}");
            assert_clean("operator identity", &error, display);
        }
        let missing = operator_identity(IdentityKind::ClientSecret, options(), |_| None).err();
        assert!(missing.is_some_and(|e| e.to_string().contains("AZURE_TENANT_ID is not set")));
        let built = operator_identity(IdentityKind::ClientSecret, options(), env(TENANT, CLIENT, CANARY_SECRET));
        let (identity, tenant) = built.unwrap_or_else(|e| panic!("well-formed identity refused: {e}"));
        assert!(identity.is_some());
        assert_eq!(tenant.as_deref(), Some(TENANT));
        let none = operator_identity(IdentityKind::None, options(), env(CANARY, CLIENT, TENANT));
        assert!(none.is_ok_and(|(identity, tenant)| identity.is_none() && tenant.is_none()));
    }

    fn credentials_shared() -> ArmShared {
        let transport = Transport::new(Arc::new(EchoingServer));
        ArmShared::new(transport, "https://arm.test", "https://arm.test/.default", 100, Metrics::new())
    }

    #[test]
    fn shapes() {
        assert!(is_guid(TENANT) && is_guid(&TENANT.to_ascii_uppercase()));
        assert!(!is_guid("72f988bf86f141af91ab2d7cd011db47") && !is_guid("72f988bf-86f1-41af-91ab-2d7cd011db4g"));
        for tenant in [TENANT, "contoso.onmicrosoft.com", "Fabrikam.com", "a-b.example.org"] {
            assert!(is_tenant_id(tenant), "{tenant}");
        }
        let long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        for bad in [CANARY, CANARY_SECRET, "", "common", "-a.com", "a-.com", "a..com", "a.c0m", "a.com.", long.as_str()]
        {
            assert!(!is_tenant_id(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn one_client_per_secret_over_rotations() {
        let credentials = credentials();
        let data = |secret: &'static str| {
            [
                ("AZURE_TENANT_ID", TENANT),
                ("AZURE_CLIENT_ID", CLIENT),
                ("AZURE_CLIENT_SECRET", secret),
                ("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION),
            ]
        };
        for version in 0..500 {
            let rotated = secret("citystack-azure", &version.to_string(), &data(CANARY_SECRET));
            credentials.credential_of("ns", &rotated).unwrap_or_else(|e| panic!("{e}"));
            // The same version again reuses the client.
            credentials.credential_of("ns", &rotated).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(credentials.shared.cached_clients(), 1);
        }
        credentials.credential_of("ns", &secret("other", "7", &data(CANARY))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(credentials.shared.cached_clients(), 2);
        // The API server says the explicit Secret is gone: its client goes too.
        let gone = credentials.resolve("ns", Some("other")).await.err();
        assert!(matches!(gone, Some(CredentialError::MissingSecret(_))), "{gone:?}");
        assert_eq!(credentials.shared.cached_clients(), 1);
        // A prefix that is not a whole segment forgets nothing; a namespace forgets all of it.
        credentials.shared.forget("n");
        credentials.shared.forget("ns/citystack");
        assert_eq!(credentials.shared.cached_clients(), 1);
        credentials.shared.forget("ns");
        assert_eq!(credentials.shared.cached_clients(), 0);
    }
}
