//! An Entra ID (Azure AD) v2.0 token endpoint for the client-credentials grant, and the bearer
//! check ARM performs on every request.
//!
//! Follows "Microsoft identity platform and the OAuth 2.0 client credentials flow"
//! (`POST /{tenant}/oauth2/v2.0/token`, form `client_id`, `client_secret`, `scope=<resource>/.default`,
//! `grant_type=client_credentials`) and its error format
//! (`{"error","error_description":"AADSTSnnnn: ...","error_codes":[n],...}`).
//!
//! azure_identity 1.0's `ClientSecretCredential` calls exactly this endpoint
//! (`{authority_host}/{tenant}/oauth2/v2.0/token`) and nothing else: no instance discovery, no
//! OpenID metadata. The discovery documents are served anyway for MSAL-based clients.
//!
//! Access tokens are opaque random strings mapped to (tenant, client, audience, expiry); they are
//! not JWTs (see README, deviations).

use crate::App;
use crate::respond::{ArmError, json_response, lock, new_uuid, random_token};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Audiences ARM accepts: the public, China and US Government ARM audiences (with or without
/// the legacy `management.core` form). Trailing slashes are ignored.
const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://management.chinacloudapi.cn",
    "https://management.core.chinacloudapi.cn",
    "https://management.usgovcloudapi.net",
    "https://management.core.usgovcloudapi.net",
];

/// A token the simulator issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub tenant: String,
    pub client_id: String,
    pub audience: String,
    pub expires_at: SystemTime,
}

/// Registered credentials and issued tokens.
#[derive(Debug, Default)]
pub struct Tokens {
    /// (tenant lower-cased, client id) → secret. Tenant `*` means any tenant.
    clients: HashMap<(String, String), String>,
    issued: HashMap<String, Issued>,
}

impl Tokens {
    /// The default pair (`--client-id`/`--client-secret`) is valid in every tenant.
    pub fn new(default_client_id: &str, default_secret: &str) -> Self {
        let mut t = Self::default();
        t.register("*", default_client_id, default_secret);
        t
    }

    pub fn register(&mut self, tenant: &str, client_id: &str, secret: &str) {
        self.clients.insert((tenant.to_ascii_lowercase(), client_id.to_string()), secret.to_string());
    }

    fn secret_for(&self, tenant: &str, client_id: &str) -> Option<&String> {
        self.clients
            .get(&(tenant.to_ascii_lowercase(), client_id.to_string()))
            .or_else(|| self.clients.get(&("*".to_string(), client_id.to_string())))
    }

    /// Expires every issued token now (admin API; lets tests provoke `InvalidAuthenticationToken`).
    pub fn expire_all(&mut self) {
        let past = SystemTime::now() - Duration::from_secs(1);
        for t in self.issued.values_mut() {
            t.expires_at = past;
        }
    }
}

/// An Entra-style OAuth error response.
fn entra_error(status: StatusCode, error: &str, aadsts: u32, description: &str) -> Response {
    let now = jiff::Timestamp::now();
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{aadsts}: {description} Trace ID: {} Correlation ID: {} Timestamp: {}",
                new_uuid(), new_uuid(), now.strftime("%Y-%m-%d %H:%M:%SZ")),
            "error_codes": [aadsts],
            "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": new_uuid(),
            "correlation_id": new_uuid(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={aadsts}"),
        }),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token` — "Microsoft identity platform and the OAuth 2.0 client
/// credentials flow: first case: access token request with a shared secret".
pub async fn token(State(app): State<Arc<App>>, Path(tenant): Path<String>, body: Bytes) -> Response {
    if tenant.is_empty() || !tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    if tenant.eq_ignore_ascii_case("common") || tenant.eq_ignore_ascii_case("organizations") {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            7000112,
            "The client credentials flow requires a tenant-specific authority, not /common or /organizations.",
        );
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");

    if get("grant_type") != "client_credentials" {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type; armsim only implements client_credentials.",
        );
    }
    let client_id = get("client_id");
    if client_id.is_empty() {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    }
    let scope = get("scope");
    let Some(resource) = scope.split(' ').find(|s| !s.is_empty()).and_then(|s| s.strip_suffix("/.default")) else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    let secret = get("client_secret");

    let mut tokens = lock(&app.tokens);
    match tokens.secret_for(&tenant, client_id) {
        None => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
            );
        }
        Some(expected) if expected != secret => {
            return entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
            );
        }
        Some(_) => {}
    }
    let lifetime = app.cfg.token_lifetime;
    let access_token = format!("armsim.{}", random_token(32));
    tokens.issued.insert(
        access_token.clone(),
        Issued {
            tenant: tenant.clone(),
            client_id: client_id.to_string(),
            audience: resource.trim_end_matches('/').to_ascii_lowercase(),
            expires_at: SystemTime::now() + lifetime,
        },
    );
    json_response(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "ext_expires_in": lifetime.as_secs(),
            "access_token": access_token,
        }),
    )
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration` ("OpenID Connect on the Microsoft
/// identity platform: find your app's OpenID configuration document URI"). Not used by
/// azure_identity; served for MSAL-based tools.
pub async fn openid_configuration(State(app): State<Arc<App>>, Path(tenant): Path<String>) -> Response {
    let base = &app.endpoint;
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": format!("{base}/{tenant}/v2.0"),
            "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
            "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
            "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "response_types_supported": ["code", "id_token", "token"],
            "grant_types_supported": ["client_credentials"],
            "tenant_region_scope": "WW",
            "cloud_instance_name": "armsim.local",
        }),
    )
}

/// `GET /common/discovery/instance` (MSAL's instance discovery). Not used by azure_identity.
pub async fn instance_discovery(State(app): State<Arc<App>>) -> Response {
    let host = app.endpoint.trim_start_matches("https://").to_string();
    json_response(
        StatusCode::OK,
        &json!({
            "tenant_discovery_endpoint": format!("{}/common/v2.0/.well-known/openid-configuration", app.endpoint),
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }),
    )
}

/// Who made an ARM request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub client_id: String,
}

/// The bearer check ARM does before anything else ("Azure Resource Manager: authenticate
/// requests"; error codes `AuthenticationFailed` and `InvalidAuthenticationToken`).
pub fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, ArmError> {
    let challenge = |tenant: &str, err: ArmError| {
        err.with_header(
            "www-authenticate",
            format!(
                "Bearer authorization_uri=\"{}/{tenant}\", error=\"invalid_token\", error_description=\"The authentication failed because of missing 'Authorization' header or an invalid token.\"",
                app.endpoint
            ),
        )
    };
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(challenge(
            "common",
            ArmError::new(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ),
        ));
    };
    let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) else {
        return Err(challenge(
            "common",
            ArmError::new(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            ),
        ));
    };
    let tokens = lock(&app.tokens);
    let Some(issued) = tokens.issued.get(token.trim()) else {
        return Err(challenge(
            "common",
            ArmError::new(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The access token is not one armsim issued.",
            ),
        ));
    };
    let now = SystemTime::now();
    if issued.expires_at <= now {
        let fmt = |t: SystemTime| {
            jiff::Timestamp::try_from(t).map(|ts| ts.strftime("%m/%d/%Y %H:%M:%S").to_string()).unwrap_or_default()
        };
        return Err(challenge(
            &issued.tenant,
            ArmError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                format!(
                    "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                    fmt(issued.expires_at),
                    fmt(now)
                ),
            ),
        ));
    }
    if !ARM_AUDIENCES.contains(&issued.audience.as_str())
        && issued.audience != app.endpoint.trim_end_matches('/').to_ascii_lowercase()
    {
        return Err(challenge(
            &issued.tenant,
            ArmError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationTokenAudience",
                format!(
                    "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences 'https://management.azure.com/'.",
                    issued.audience
                ),
            ),
        ));
    }
    Ok(Principal { tenant: issued.tenant.clone(), client_id: issued.client_id.clone() })
}
