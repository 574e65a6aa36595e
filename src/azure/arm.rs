//! Thin typed calls to Azure Resource Manager over azure_core's `Pipeline` (there are no
//! official ARM crates for Rust): GET, PUT, DELETE, POST actions, and async-operation status.
//!
//! Rules from the ARM RPC ("Azure Resource Manager resource provider contract"): PUT answers
//! 201 on create and 200 on update, with a non-terminal `provisioningState` plus
//! `Azure-AsyncOperation` / `Location` headers while work runs; DELETE and POST actions answer
//! 202 + `Location`; `Retry-After` is in seconds; errors are `{error:{code,message}}`;
//! throttling is 429 + `Retry-After`, with `x-ms-ratelimit-remaining-subscription-*` headers.
//!
//! The pipeline's own retries are off: a throttled or failing call returns at once and the
//! object is requeued after `Retry-After`, so no reconcile sleeps while others wait.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{ClientOptions, Context, Method, Pipeline, Request, RetryOptions, Transport, Url};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::Value;

use crate::telemetry::Metrics;

/// An ARM failure, with what the operator does about it.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// 429/503, or the operator's own per-subscription budget is spent: requeue after the wait.
    #[error("Azure throttled the request; retrying in {retry_after:?}")]
    Throttled {
        /// How long to wait (from `Retry-After`, else a default).
        retry_after: Duration,
    },
    /// 401/403 or a credential that cannot get a token.
    #[error("Azure refused the credential: {0}")]
    Auth(String),
    /// Any other ARM error response.
    #[error("ARM {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// ARM error code, e.g. `ResourceGroupNotFound`.
        code: String,
        /// ARM error message.
        message: String,
    },
    /// The request could not be sent or its answer not read.
    #[error("ARM request failed: {0}")]
    Transport(String),
}

impl ArmError {
    /// The ARM error code, when ARM answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// An ARM answer: status, the interesting headers, and the JSON body (Null when empty).
#[derive(Clone, Debug)]
pub struct ArmResponse {
    /// HTTP status.
    pub status: u16,
    /// `Azure-AsyncOperation`, else `Location`: where to follow a long-running operation.
    pub operation: Option<String>,
    /// `Retry-After` in seconds.
    pub retry_after: Option<Duration>,
    /// JSON body.
    pub body: Value,
}

/// An ARM client for one credential: a pipeline with a bearer-token policy for the cloud's
/// ARM scope, sharing the operator's transport and per-subscription budget.
#[derive(Clone)]
pub struct Arm {
    pipeline: Arc<Pipeline>,
    endpoint: String,
    budget: Arc<DefaultKeyedRateLimiter<String>>,
    paused: Arc<Mutex<HashMap<String, Instant>>>,
    metrics: Metrics,
    /// Who the credential acts as (`Resolved::principal`): not secret.
    principal: String,
}

/// What every ARM client shares: transport, endpoint, scope, budget, metrics.
#[derive(Clone)]
pub struct ArmShared {
    transport: Transport,
    endpoint: String,
    scope: String,
    budget: Arc<DefaultKeyedRateLimiter<String>>,
    /// Subscriptions ARM throttled, and until when: ARM throttles per subscription, so a
    /// `Retry-After` holds back every caller of that subscription, not only the one refused.
    paused: Arc<Mutex<HashMap<String, Instant>>>,
    metrics: Metrics,
    /// One client per slot (a Secret's `<namespace>/<name>`), with the version it was built for.
    clients: Arc<Mutex<HashMap<String, (String, Arm)>>>,
}

impl ArmShared {
    /// Shared state for `endpoint` with token scope `scope` and `per_second` requests per
    /// subscription (burst of ten seconds' worth).
    pub fn new(transport: Transport, endpoint: &str, scope: &str, per_second: u32, metrics: Metrics) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_second.max(1).saturating_mul(10)).unwrap_or(NonZeroU32::MIN);
        Self {
            transport,
            endpoint: endpoint.to_owned(),
            scope: scope.to_owned(),
            budget: Arc::new(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))),
            paused: Arc::default(),
            metrics,
            clients: Arc::default(),
        }
    }

    /// The transport (for credentials, which fetch tokens through it).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The client for a credential acting as `principal` (not secret, e.g.
    /// `<tenant>/<client id>`). `key` is `<slot>/<version>`, e.g.
    /// `<namespace>/<secret>/<resourceVersion>` (a key without `/` is a slot of its own): the
    /// client is built once per key, so tokens are cached across reconciles, and at most one
    /// client is kept per slot, so a new version replaces the old one.
    pub fn client(&self, key: &str, principal: &str, credential: Arc<dyn TokenCredential>) -> Arm {
        let (slot, version) = key.rsplit_once('/').unwrap_or((key, ""));
        let cached =
            self.clients.lock().ok().and_then(|c| c.get(slot).filter(|(v, _)| v == version).map(|e| e.1.clone()));
        if let Some(arm) = cached {
            return arm;
        }
        let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(credential, [self.scope.clone()]));
        let options = ClientOptions {
            transport: Some(self.transport.clone()),
            retry: RetryOptions::none(),
            ..Default::default()
        };
        let pipeline =
            Pipeline::new(Some("citystack"), Some(env!("CARGO_PKG_VERSION")), options, Vec::new(), vec![auth], None);
        let arm = Arm {
            pipeline: Arc::new(pipeline),
            endpoint: self.endpoint.clone(),
            budget: self.budget.clone(),
            paused: self.paused.clone(),
            metrics: self.metrics.clone(),
            principal: principal.to_owned(),
        };
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(slot.to_owned(), (version.to_owned(), arm.clone()));
        }
        arm
    }

    /// Drops the cached clients of `prefix`: a slot (`<namespace>/<secret>`, e.g. a deleted
    /// Secret) or every slot under it (`<namespace>`).
    pub fn forget(&self, prefix: &str) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.retain(|slot, _| {
                slot != prefix && !slot.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
            });
        }
    }

    /// How many clients are cached (one per credential slot).
    pub fn cached_clients(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or_default()
    }
}

impl Arm {
    /// Who this client's credential acts as (see `Resolved::principal`): not secret.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// GET `id`; `Ok(None)` on 404.
    ///
    /// Errors: [`ArmError`].
    pub async fn get(&self, subscription: &str, id: &str, api_version: &str) -> Result<Option<ArmResponse>, ArmError> {
        match self.send(subscription, Method::Get, &self.url(id, api_version), None).await {
            Ok(r) => Ok(Some(r)),
            Err(ArmError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// PUT `body` to `id` (create or update).
    ///
    /// Errors: [`ArmError`].
    pub async fn put(
        &self,
        subscription: &str,
        id: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<ArmResponse, ArmError> {
        self.send(subscription, Method::Put, &self.url(id, api_version), Some(body)).await
    }

    /// DELETE `id`; 404 counts as done (answers status 404).
    ///
    /// Errors: [`ArmError`].
    pub async fn delete(&self, subscription: &str, id: &str, api_version: &str) -> Result<ArmResponse, ArmError> {
        match self.send(subscription, Method::Delete, &self.url(id, api_version), None).await {
            Err(ArmError::Api { status: 404, .. }) => {
                Ok(ArmResponse { status: 404, operation: None, retry_after: None, body: Value::Null })
            }
            other => other,
        }
    }

    /// POST the action `{id}/{action}` (e.g. `listKeys`).
    ///
    /// Errors: [`ArmError`].
    pub async fn action(
        &self,
        subscription: &str,
        id: &str,
        action: &str,
        api_version: &str,
    ) -> Result<ArmResponse, ArmError> {
        self.send(
            subscription,
            Method::Post,
            &self.url(&format!("{id}/{action}"), api_version),
            Some(&Value::Object(Default::default())),
        )
        .await
    }

    /// GET an operation URL ARM returned (`Azure-AsyncOperation` or `Location`), as is.
    ///
    /// Errors: [`ArmError`].
    pub async fn operation(&self, subscription: &str, url: &str) -> Result<ArmResponse, ArmError> {
        self.send(subscription, Method::Get, url, None).await
    }

    fn url(&self, id: &str, api_version: &str) -> String {
        format!("{}{id}?api-version={api_version}", self.endpoint)
    }

    async fn send(
        &self,
        subscription: &str,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<ArmResponse, ArmError> {
        let now = Instant::now();
        if let Some(until) =
            self.paused.lock().ok().and_then(|p| p.get(subscription).copied()).filter(|until| *until > now)
        {
            return Err(ArmError::Throttled { retry_after: until - now });
        }
        if let Err(not_until) = self.budget.check_key(&subscription.to_owned()) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            return Err(ArmError::Throttled { retry_after: wait.max(Duration::from_millis(100)) });
        }
        let method_label = method_name(&method);
        let mut request =
            Request::new(Url::parse(url).map_err(|e| ArmError::Transport(format!("URL {url}: {e}")))?, method);
        if let Some(body) = body {
            request.insert_header("content-type", "application/json");
            request.set_body(serde_json::to_vec(body).map_err(|e| ArmError::Transport(e.to_string()))?);
        }
        let result = self.pipeline.send(&Context::new(), &mut request, None).await;
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                let mapped = map_error(&error);
                if let ArmError::Throttled { retry_after } = &mapped
                    && let Ok(mut paused) = self.paused.lock()
                {
                    paused.insert(subscription.to_owned(), Instant::now() + *retry_after);
                }
                let status = match &mapped {
                    ArmError::Api { status, .. } => status.to_string(),
                    ArmError::Throttled { .. } => "429".into(),
                    ArmError::Auth(_) => "auth".into(),
                    ArmError::Transport(_) => "transport".into(),
                };
                self.metrics.arm_request(method_label, &status);
                return Err(mapped);
            }
        };
        let status = u16::from(response.status());
        self.metrics.arm_request(method_label, &status.to_string());
        let header = |name: &'static str| {
            response
                .headers()
                .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
                .map(str::to_owned)
        };
        for (name, kind) in [
            ("x-ms-ratelimit-remaining-subscription-reads", "reads"),
            ("x-ms-ratelimit-remaining-subscription-writes", "writes"),
        ] {
            if let Some(remaining) = header(name).and_then(|v| v.parse::<i64>().ok()) {
                self.metrics.arm_ratelimit_remaining(kind, remaining);
            }
        }
        let operation = header("azure-asyncoperation").or_else(|| header("location"));
        let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
        let bytes = response.into_body();
        let body = if bytes.as_ref().is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(bytes.as_ref()).unwrap_or(Value::Null)
        };
        Ok(ArmResponse { status, operation, retry_after, body })
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        _ => "OTHER",
    }
}

fn map_error(error: &azure_core::Error) -> ArmError {
    use azure_core::error::ErrorKind;
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code, raw_response } => {
            let code = error_code.clone().unwrap_or_default();
            let status = u16::from(*status);
            let body: Value = raw_response
                .as_ref()
                .and_then(|r| serde_json::from_slice(r.body().as_ref()).ok())
                .unwrap_or(Value::Null);
            let message = body.pointer("/error/message").and_then(Value::as_str).unwrap_or_default().to_owned();
            let retry_after = raw_response
                .as_ref()
                .and_then(|r| r.headers().get_optional_str(&azure_core::http::headers::RETRY_AFTER).map(str::to_owned))
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            match status {
                429 | 503 => ArmError::Throttled { retry_after: retry_after.unwrap_or(Duration::from_secs(10)) },
                401 | 403 => ArmError::Auth(format!("{status} {code}: {}", crate::error::bounded(&message, 300))),
                _ => ArmError::Api { status, code, message: crate::error::bounded(&message, 300) },
            }
        }
        // azure_identity's text may quote the credential's values: only fixed text leaves here.
        ErrorKind::Credential => ArmError::Auth(
            "could not get a token for the credential (check AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)"
                .into(),
        ),
        _ => ArmError::Transport(crate::error::bounded(&error.to_string(), 300)),
    }
}

/// ARM `provisioningState`: terminal or in progress. RP-specific states (Accepted, Creating,
/// Updating, Provisioning, Deleting, ...) are in progress; a missing state means Succeeded
/// (ARM RPC, "Asynchronous operations").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provisioning {
    /// Succeeded (or no state reported).
    Succeeded,
    /// Failed.
    Failed,
    /// Canceled.
    Canceled,
    /// Anything else: still running.
    InProgress,
}

impl Provisioning {
    /// Classifies a state string.
    pub fn of(state: Option<&str>) -> Self {
        match state.map(str::to_ascii_lowercase).as_deref() {
            None | Some("succeeded") => Provisioning::Succeeded,
            Some("failed") => Provisioning::Failed,
            Some("canceled") | Some("cancelled") => Provisioning::Canceled,
            Some(_) => Provisioning::InProgress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_specific_states_are_in_progress() {
        assert_eq!(Provisioning::of(None), Provisioning::Succeeded);
        assert_eq!(Provisioning::of(Some("Succeeded")), Provisioning::Succeeded);
        assert_eq!(Provisioning::of(Some("Creating")), Provisioning::InProgress);
        assert_eq!(Provisioning::of(Some("Accepted")), Provisioning::InProgress);
        assert_eq!(Provisioning::of(Some("Failed")), Provisioning::Failed);
        assert_eq!(Provisioning::of(Some("Canceled")), Provisioning::Canceled);
    }
}
