//! Injected faults (admin API) and ARM's per-subscription request throttling.
//!
//! A fault rule matches requests by method and path and either replaces the answer (`status`),
//! changes the real answer (headers, body), or makes the long-running operation the request
//! starts end Failed (`operation: "Failed"`). The answer changes exist to feed clients the
//! untrusted input real ARM (or a proxy in front of it) can send: odd `Retry-After` values,
//! huge or non-JSON bodies, JSON of the wrong shape, operation URLs on another host.
//!
//! Throttling follows "Understand how Azure Resource Manager throttles requests" (token bucket
//! algorithm): buckets per subscription and principal — reads 250 burst refilled at 25/s,
//! writes 200 burst refilled at 10/s, deletes 200 burst refilled at 10/s —, the remaining
//! budget in `x-ms-ratelimit-remaining-subscription-reads`/`-writes`/`-deletes`, and
//! `429 Too Many Requests` + `Retry-After` (seconds) when the bucket is empty.

use crate::respond::{ArmError, empty_response};
use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::time::Instant;

/// Largest `bodyBytes` accepted (the answer is built in memory).
pub const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;

/// One fault rule, as posted to `POST /_admin/faults`. See `hack/armsim/README.md`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Assigned by the server.
    #[serde(default)]
    pub id: u64,
    /// HTTP method to match (any when absent), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Substring of the request path to match (any when absent), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// Answer matching requests with this status instead of handling them (200-599): an ARM
    /// error body for 4xx/5xx, no body otherwise (unless a body field says otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After: <seconds>` on the answer (429/503 replacements default to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// `Retry-After` with this exact value (e.g. `18446744073709551615`, an HTTP-date, `0`,
    /// `soon`), on any status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_raw: Option<String>,
    /// `"Failed"`: the next matching long-running operation ends Failed instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The error code (default derived from the status, or `InternalServerError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How many requests/operations the rule applies to (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Make the body larger than this many bytes: a JSON object body (an empty body counts as
    /// `{}`) gets a string field `armsimPadding`; any other body gets trailing spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<u64>,
    /// Replace the body with this text as is (e.g. not JSON at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_raw: Option<String>,
    /// Replace the body with this JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_json: Option<Value>,
    /// JSON merge patch (RFC 7396) over the JSON body, to give fields the wrong shape, e.g.
    /// `{"properties": {"provisioningState": 7}, "tags": "x"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_patch: Option<Value>,
    /// `Content-Type` of the answer (a replaced body keeps `application/json` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Set `Azure-AsyncOperation` to this value (any URL, e.g. on another host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_operation: Option<String>,
    /// Set `Location` to this value (any URL, e.g. on another host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Move the answer's `Azure-AsyncOperation` and `Location` URLs to this `host[:port]`
    /// (same scheme, path and query): a client that follows them leaves armsim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_host: Option<String>,
}

impl Fault {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path_contains.as_deref().is_none_or(|p| path.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
    }

    fn is_operation_fault(&self) -> bool {
        self.operation.as_deref().is_some_and(|o| o.eq_ignore_ascii_case("failed"))
    }

    /// Whether the rule changes the answer (beyond replacing its status).
    fn changes_answer(&self) -> bool {
        self.retry_after.is_some()
            || self.retry_after_raw.is_some()
            || self.body_bytes.is_some()
            || self.body_raw.is_some()
            || self.body_json.is_some()
            || self.body_patch.is_some()
            || self.content_type.is_some()
            || self.async_operation.is_some()
            || self.location.is_some()
            || self.operation_host.is_some()
    }

    fn changes_body(&self) -> bool {
        self.body_bytes.is_some() || self.body_raw.is_some() || self.body_json.is_some() || self.body_patch.is_some()
    }

    /// Validates a posted rule.
    pub fn validate(&self) -> Result<(), String> {
        if self.operation.is_some() {
            if !self.is_operation_fault() {
                return Err("operation must be \"Failed\"".into());
            }
            if self.status.is_some() || self.changes_answer() {
                return Err("operation: \"Failed\" takes no status, header or body fields".into());
            }
            return Ok(());
        }
        if self.status.is_none() && !self.changes_answer() {
            return Err(
                "give status (e.g. 429), an answer change (retryAfterRaw, bodyBytes, bodyRaw, bodyJson, bodyPatch, asyncOperation, location, operationHost) or operation: \"Failed\"".into(),
            );
        }
        if let Some(s) = self.status
            && !(200..=599).contains(&s)
        {
            return Err(format!("status {s} is not in 200..=599"));
        }
        if self.retry_after.is_some() && self.retry_after_raw.is_some() {
            return Err("give retryAfter or retryAfterRaw, not both".into());
        }
        if self.body_raw.is_some() && (self.body_json.is_some() || self.body_patch.is_some()) {
            return Err("bodyRaw replaces the body: it cannot be combined with bodyJson or bodyPatch".into());
        }
        if self.body_bytes.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(format!("bodyBytes is limited to {MAX_BODY_BYTES}"));
        }
        for (name, value) in [
            ("retryAfterRaw", &self.retry_after_raw),
            ("contentType", &self.content_type),
            ("asyncOperation", &self.async_operation),
            ("location", &self.location),
        ] {
            if let Some(v) = value
                && HeaderValue::from_str(v).is_err()
            {
                return Err(format!("{name} is not a valid header value"));
            }
        }
        if let Some(host) = &self.operation_host
            && (host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)))
        {
            return Err("operationHost must be host[:port]".into());
        }
        Ok(())
    }

    fn default_code(status: u16) -> &'static str {
        match status {
            400 => "BadRequest",
            401 => "AuthenticationFailed",
            403 => "AuthorizationFailed",
            404 => "NotFound",
            409 => "Conflict",
            429 => "TooManyRequests",
            500 => "InternalServerError",
            502 => "BadGateway",
            503 => "ServiceUnavailable",
            504 => "GatewayTimeout",
            _ => "InjectedFault",
        }
    }

    /// The answer that replaces the real one, when the rule has a `status`.
    pub fn replacement(&self) -> Option<Response> {
        let status = self.status?;
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status < 400 {
            return Some(empty_response(code));
        }
        let error_code = self.code.clone().unwrap_or_else(|| Fault::default_code(status).to_string());
        let message = self
            .message
            .clone()
            .unwrap_or_else(|| format!("armsim: injected fault #{} ({status} {error_code}).", self.id));
        Some(ArmError::new(code, error_code, message).into_response())
    }

    /// Applies the rule's header and body changes to an answer (the replacement or the real one).
    pub async fn apply(&self, resp: Response) -> Response {
        let (mut parts, body) = resp.into_parts();
        let body = if self.changes_body() {
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            parts.headers.remove(CONTENT_LENGTH);
            if !parts.headers.contains_key(CONTENT_TYPE) || self.body_json.is_some() || self.body_raw.is_some() {
                parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
            }
            Body::from(self.new_body(&bytes))
        } else {
            body
        };
        let headers = &mut parts.headers;
        let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        if let Some(v) = &self.content_type {
            set(headers, "content-type", v);
        }
        let default_retry = matches!(self.status, Some(429 | 503)).then_some(1);
        if let Some(raw) = &self.retry_after_raw {
            set(headers, "retry-after", raw);
        } else if let Some(secs) = self.retry_after.or(default_retry) {
            set(headers, "retry-after", &secs.to_string());
        }
        if let Some(host) = &self.operation_host {
            for name in ["azure-asyncoperation", "location"] {
                let moved = headers.get(name).and_then(|v| v.to_str().ok()).map(|url| with_host(url, host));
                if let Some(url) = moved {
                    set(headers, name, &url);
                }
            }
        }
        if let Some(v) = &self.async_operation {
            set(headers, "azure-asyncoperation", v);
        }
        if let Some(v) = &self.location {
            set(headers, "location", v);
        }
        Response::from_parts(parts, body)
    }

    /// The changed body: replaced (raw or JSON), patched, then padded.
    fn new_body(&self, original: &[u8]) -> Vec<u8> {
        if let Some(raw) = &self.body_raw {
            return pad_text(raw.as_bytes().to_vec(), self.body_bytes);
        }
        let json = match &self.body_json {
            Some(v) => Some(v.clone()),
            None if original.iter().all(u8::is_ascii_whitespace) => Some(Value::Object(Map::new())),
            None => serde_json::from_slice::<Value>(original).ok(),
        };
        let Some(mut json) = json else {
            // Not JSON: only padding applies.
            return pad_text(original.to_vec(), self.body_bytes);
        };
        if let Some(patch) = &self.body_patch {
            merge_patch(&mut json, patch);
        }
        match (self.body_bytes, json.as_object_mut()) {
            (Some(n), Some(obj)) => {
                let current = serde_json::to_vec(obj).map(|v| v.len() as u64).unwrap_or(0);
                // The padding field adds `,"armsimPadding":""` around its value.
                let need = (n + 1).saturating_sub(current).max(1) as usize;
                obj.insert("armsimPadding".into(), Value::String("a".repeat(need)));
                serde_json::to_vec(&json).unwrap_or_default()
            }
            (bytes, _) => pad_text(serde_json::to_vec(&json).unwrap_or_default(), bytes),
        }
    }
}

/// Pads `body` with spaces to more than `bytes` bytes.
fn pad_text(mut body: Vec<u8>, bytes: Option<u64>) -> Vec<u8> {
    if let Some(n) = bytes {
        let target = usize::try_from(n).unwrap_or(usize::MAX).saturating_add(1);
        if body.len() < target {
            body.resize(target, b' ');
        }
    }
    body
}

/// `url` with its authority replaced by `host` (`https://a:1/p?q` → `https://host/p?q`).
fn with_host(url: &str, host: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("https://{host}/{}", url.trim_start_matches('/'));
    };
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
    format!("{scheme}://{host}{path}")
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// The armed fault rules.
#[derive(Debug, Default)]
pub struct Faults {
    next_id: u64,
    rules: Vec<(Fault, u32)>,
}

impl Faults {
    /// Arms a rule; answers it with its id.
    pub fn add(&mut self, mut fault: Fault) -> Fault {
        self.next_id += 1;
        fault.id = self.next_id;
        let remaining = fault.count.unwrap_or(1).max(1);
        self.rules.push((fault.clone(), remaining));
        fault
    }

    /// The armed rules with their remaining counts.
    pub fn list(&self) -> Vec<Value> {
        self.rules
            .iter()
            .map(|(f, remaining)| {
                let mut v = serde_json::to_value(f).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("remaining".into(), (*remaining).into());
                }
                v
            })
            .collect()
    }

    /// Disarms every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    fn take(&mut self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let idx = self.rules.iter().position(|(f, _)| pred(f))?;
        let fault = self.rules[idx].0.clone();
        self.rules[idx].1 -= 1;
        if self.rules[idx].1 == 0 {
            self.rules.remove(idx);
        }
        Some(fault)
    }

    /// If an answer rule (status or answer changes) matches this request, consumes it.
    pub fn take_request_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        self.take(|f| !f.is_operation_fault() && f.matches(method, path))
    }

    /// If an operation fault matches this request, consumes it and returns (code, message) for
    /// the long-running operation the request starts.
    pub fn take_operation_fault(&mut self, method: &str, path: &str) -> Option<(String, String)> {
        let fault = self.take(|f| f.is_operation_fault() && f.matches(method, path))?;
        let code = fault.code.clone().unwrap_or_else(|| "InternalServerError".to_string());
        let message = fault
            .message
            .clone()
            .unwrap_or_else(|| format!("armsim: injected operation failure #{} ({code}).", fault.id));
        Some((code, message))
    }
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-subscription read and write buckets.
#[derive(Debug, Default)]
pub struct Throttle {
    buckets: HashMap<(String, String, Class), Bucket>,
}

/// ARM's request classes, each with its own bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// GET, HEAD.
    Read,
    /// PUT, PATCH, POST.
    Write,
    /// DELETE.
    Delete,
}

impl Class {
    pub fn of(method: &axum::http::Method) -> Class {
        match *method {
            axum::http::Method::GET | axum::http::Method::HEAD => Class::Read,
            axum::http::Method::DELETE => Class::Delete,
            _ => Class::Write,
        }
    }

    /// The response header carrying the bucket's remaining tokens.
    pub fn header(self) -> &'static str {
        match self {
            Class::Read => "x-ms-ratelimit-remaining-subscription-reads",
            Class::Write => "x-ms-ratelimit-remaining-subscription-writes",
            Class::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }

    /// The word ARM's throttling message uses.
    pub fn word(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Delete => "delete",
        }
    }

    /// (burst, refill per second).
    fn bucket(self) -> (f64, f64) {
        match self {
            Class::Read => (250.0, 25.0),
            Class::Write | Class::Delete => (200.0, 10.0),
        }
    }
}

impl Throttle {
    /// Takes one request of `class` from the bucket of `subscription` and `principal`.
    /// `Ok(remaining)` or `Err(retry_after_seconds)`.
    pub fn take(&mut self, subscription: &str, principal: &str, class: Class) -> Result<u64, u64> {
        let (burst, rate) = class.bucket();
        let now = Instant::now();
        let b = self
            .buckets
            .entry((subscription.to_ascii_lowercase(), principal.to_owned(), class))
            .or_insert(Bucket { tokens: burst, last: now });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(b.tokens.floor() as u64)
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    pub fn reset(&mut self) {
        self.buckets.clear();
    }
}
