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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use azure_core::credentials::TokenCredential;
use azure_core::http::headers::HeaderName;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineStreamOptions, Request, RetryOptions, Transport, Url,
};
use futures::StreamExt;
use serde_json::Value;

use crate::azure::budget::{self, Throttling};
use crate::azure::response::{self, MAX_BODY_BYTES, MAX_RETRY_AFTER, RawAnswer};
use crate::telemetry::Metrics;

/// Longest a request waits in place for the operator's own budget to refill.
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(1);

/// Longest one ARM request may take, answer body included (seconds).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub use crate::azure::response::{ArmError, ArmResponse, Provisioning};

/// An ARM client for one credential: a pipeline with a bearer-token policy for the cloud's
/// ARM scope, sharing the operator's transport and per-subscription budget.
#[derive(Clone)]
pub struct Arm {
    pipeline: Arc<Pipeline>,
    endpoint: String,
    throttling: Arc<Throttling>,
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
    /// The budget, and the subscriptions and principals ARM throttled: a `Retry-After` holds
    /// back every caller of that subscription and principal, not only the one refused.
    throttling: Arc<Throttling>,
    metrics: Metrics,
    /// One client per slot (a Secret's `<namespace>/<name>`).
    clients: Arc<Mutex<HashMap<String, CachedClient>>>,
}

/// A cached client: the credential version it was built for, and when it was last handed out.
type CachedClient = (String, Arm, Instant);

/// A client not asked for in this long is dropped (with its cached token) and built again on
/// the next use: the table then holds only credentials in use, whatever the churn of
/// namespaces and Secrets. Longer than any resync, so a quiet but live object keeps its client.
pub const IDLE_CLIENT: Duration = Duration::from_secs(3 * 60 * 60);

impl ArmShared {
    /// Shared state for `endpoint` with token scope `scope`, taking `budget_percent` of ARM's
    /// request buckets per subscription and principal ([`Budget`]).
    pub fn new(transport: Transport, endpoint: &str, scope: &str, budget_percent: u8, metrics: Metrics) -> Self {
        Self {
            transport,
            endpoint: endpoint.to_owned(),
            scope: scope.to_owned(),
            throttling: Arc::new(Throttling::new(budget_percent)),
            metrics,
            clients: Arc::default(),
        }
    }

    /// The budget and pauses every client shares.
    pub fn throttling(&self) -> &Arc<Throttling> {
        &self.throttling
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
        let now = Instant::now();
        let cached = self.clients.lock().ok().and_then(|mut clients| {
            clients.retain(|_, (_, _, used)| now.saturating_duration_since(*used) < IDLE_CLIENT);
            let (_, arm, used) = clients.get_mut(slot).filter(|(v, _, _)| v == version)?;
            *used = now;
            Some(arm.clone())
        });
        if let Some(arm) = cached {
            return arm;
        }
        // Budget keys whose bucket is full again carry no state worth keeping.
        self.throttling.retain_recent();
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
            throttling: self.throttling.clone(),
            metrics: self.metrics.clone(),
            principal: principal.to_owned(),
        };
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(slot.to_owned(), (version.to_owned(), arm.clone(), now));
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

    /// PATCH `body` to `id` (ARM "Update": merges only the fields sent).
    ///
    /// Errors: [`ArmError`].
    pub async fn patch(
        &self,
        subscription: &str,
        id: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<ArmResponse, ArmError> {
        self.send(subscription, Method::Patch, &self.url(id, api_version), Some(body)).await
    }

    /// Every item of an ARM list (`{value: [...], nextLink}`), following `nextLink` on the
    /// configured endpoint only, at most `max_pages` pages.
    ///
    /// Errors: [`ArmError`]; [`ArmError::UntrustedUrl`] for a `nextLink` elsewhere; a list
    /// longer than `max_pages` pages is [`ArmError::Api`] with code `TooManyPages` (status 0).
    pub async fn list(
        &self,
        subscription: &str,
        path: &str,
        api_version: &str,
        max_pages: usize,
    ) -> Result<Vec<Value>, ArmError> {
        let mut items = Vec::new();
        let mut url = self.url(path, api_version);
        for _ in 0..max_pages {
            let page = self.send(subscription, Method::Get, &url, None).await?;
            if let Some(values) = page.body.get("value").and_then(Value::as_array) {
                items.extend(values.iter().cloned());
            }
            match page.body.get("nextLink").and_then(Value::as_str).filter(|l| !l.is_empty()) {
                None => return Ok(items),
                Some(next) if self.trusts(next) => url = next.to_owned(),
                Some(next) => {
                    return Err(ArmError::UntrustedUrl {
                        origin: response::origin(next).unwrap_or_else(|| "unparseable".into()),
                    });
                }
            }
        }
        Err(ArmError::Api {
            status: 0,
            code: "TooManyPages".into(),
            message: format!("the list has more than {max_pages} pages"),
        })
    }

    /// DELETE `id`; 404 counts as done (answers status 404).
    ///
    /// Errors: [`ArmError`].
    pub async fn delete(&self, subscription: &str, id: &str, api_version: &str) -> Result<ArmResponse, ArmError> {
        match self.send(subscription, Method::Delete, &self.url(id, api_version), None).await {
            Err(ArmError::Api { status: 404, .. }) => Ok(ArmResponse {
                status: 404,
                operation: None,
                untrusted_operation: None,
                retry_after: None,
                body: Value::Null,
            }),
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

    /// GET an operation URL ARM returned (`Azure-AsyncOperation` or `Location`), as is, when
    /// it is on the configured endpoint (same scheme, host and port).
    ///
    /// Errors: [`ArmError::UntrustedUrl`] for any other URL (never sent: the request would
    /// carry the bearer token there); else as [`Arm::get`].
    pub async fn operation(&self, subscription: &str, url: &str) -> Result<ArmResponse, ArmError> {
        if !self.trusts(url) {
            return Err(ArmError::UntrustedUrl {
                origin: response::origin(url).unwrap_or_else(|| "unparseable".into()),
            });
        }
        self.send(subscription, Method::Get, url, None).await
    }

    /// Whether `url` is on the configured ARM endpoint (scheme, host and port).
    pub fn trusts(&self, url: &str) -> bool {
        response::same_origin(&self.endpoint, url)
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
        // ARM's throttling buckets are per subscription and principal (ARM docs, "Understand
        // how Azure Resource Manager throttles requests"): one tenant's 429 pauses only its own.
        let key = budget::key(subscription, &self.principal);
        if let Some(retry_after) = self.throttling.paused_for(&key) {
            return Err(ArmError::Throttled { retry_after });
        }
        // A short wait for the next token is taken here (the reconcile could do nothing else
        // with ARM meanwhile); a longer one returns the object to the queue.
        let mut waited = Duration::ZERO;
        while let Err(wait) = self.throttling.check(&key, &method) {
            if waited + wait > MAX_BUDGET_WAIT {
                return Err(ArmError::Budget { retry_after: wait.clamp(Duration::from_millis(100), MAX_RETRY_AFTER) });
            }
            tokio::time::sleep(wait).await;
            waited += wait;
        }
        let method_label = method_name(&method);
        let parsed = Url::parse(url).map_err(|_| ArmError::Transport("the request URL does not parse".into()))?;
        let mut request = Request::new(parsed, method);
        if let Some(body) = body {
            request.insert_header("content-type", "application/json");
            request.set_body(serde_json::to_vec(body).map_err(|e| ArmError::Transport(e.to_string()))?);
        }
        // A slow or silent endpoint must not hold a reconcile for ever.
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.read(&mut request)).await.unwrap_or_else(|_| {
            Err(ArmError::Transport(format!("no complete answer within {}s", REQUEST_TIMEOUT.as_secs())))
        });
        let result = result.and_then(|raw| {
            for (name, kind) in [
                ("x-ms-ratelimit-remaining-subscription-reads", "reads"),
                ("x-ms-ratelimit-remaining-subscription-writes", "writes"),
            ] {
                if let Some(remaining) = raw.headers.get(name).and_then(|v| v.trim().parse::<i64>().ok()) {
                    self.metrics.arm_ratelimit_remaining(kind, remaining);
                }
            }
            response::interpret(&raw, &self.endpoint, SystemTime::now())
        });
        let status = match &result {
            Ok(r) => r.status.to_string(),
            Err(ArmError::Throttled { .. }) => "429".into(),
            // Not a response (the budget answers before sending); listed for completeness.
            Err(ArmError::Budget { .. }) => "budget".into(),
            Err(ArmError::Auth(_)) => "auth".into(),
            Err(ArmError::Transport(_) | ArmError::UntrustedUrl { .. }) => "transport".into(),
            Err(
                ArmError::Api { status, .. } | ArmError::BodyTooLarge { status, .. } | ArmError::InvalidBody { status },
            ) => status.to_string(),
        };
        self.metrics.arm_request(method_label, &status);
        if let Err(ArmError::Throttled { retry_after }) = &result {
            self.throttling.throttled(&key, *retry_after);
        }
        result
    }

    /// Sends `request` and reads at most [`MAX_BODY_BYTES`] of the answer.
    async fn read(&self, request: &mut Request) -> Result<RawAnswer, ArmError> {
        let options = PipelineStreamOptions { skip_checks: true, ..Default::default() };
        let response =
            self.pipeline.stream(&Context::new(), request, Some(options)).await.map_err(|e| map_error(&e))?;
        let (status, headers, mut body) = response.deconstruct();
        let mut raw = RawAnswer { status: u16::from(status), ..Default::default() };
        for name in response::HEADERS {
            if let Some(value) = headers.get_optional_str(&HeaderName::from_static(name)) {
                raw.headers.insert(name.to_owned(), value.to_owned());
            }
        }
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| map_error(&e))?;
            if raw.body.len().saturating_add(chunk.len()) > MAX_BODY_BYTES {
                raw.truncated = true;
                break;
            }
            raw.body.extend_from_slice(&chunk);
        }
        Ok(raw)
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

/// Errors raised before ARM answered: the credential (no token) or the transport. Their text
/// comes from third-party libraries that may echo credential fields, so only fixed text is kept.
fn map_error(error: &azure_core::Error) -> ArmError {
    use azure_core::error::ErrorKind;
    match error.kind() {
        ErrorKind::Credential => ArmError::Auth(
            "could not get a token for the credential (check AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)"
                .into(),
        ),
        ErrorKind::Io => ArmError::Transport("connection failed or was cut".into()),
        _ => ArmError::Transport("the request failed before ARM answered".into()),
    }
}
