//! Injected faults (admin API) and ARM's per-subscription request throttling.
//!
//! Throttling follows "Understand how Azure Resource Manager throttles requests": a token bucket
//! per subscription — reads 250 burst refilled at 25/s, writes 200 burst refilled at 10/s —,
//! the remaining budget in `x-ms-ratelimit-remaining-subscription-reads`/`-writes`, and
//! `429 Too Many Requests` + `Retry-After` (seconds) when the bucket is empty.

use crate::respond::ArmError;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Instant;

/// One fault rule, as posted to `POST /_admin/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Assigned by the server.
    #[serde(default)]
    pub id: u64,
    /// HTTP method to match (any when absent), case-insensitive.
    #[serde(default)]
    pub method: Option<String>,
    /// Substring of the request path to match (any when absent), case-insensitive.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Answer matching requests with this status (e.g. 429, 500, 503) and an ARM error body.
    #[serde(default)]
    pub status: Option<u16>,
    /// `Retry-After` seconds for the injected answer (429/503 default to 1).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// `"Failed"`: the next matching long-running operation ends Failed instead.
    #[serde(default)]
    pub operation: Option<String>,
    /// The error code (default derived from the status, or `InternalServerError`).
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// How many requests/operations the rule applies to (default 1).
    #[serde(default)]
    pub count: Option<u32>,
}

impl Fault {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path_contains.as_deref().is_none_or(|p| path.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
    }

    fn is_operation_fault(&self) -> bool {
        self.operation.as_deref().is_some_and(|o| o.eq_ignore_ascii_case("failed"))
    }

    /// Validates a posted rule.
    pub fn validate(&self) -> Result<(), String> {
        match (self.status, self.is_operation_fault()) {
            (Some(_), true) => Err("give either status or operation, not both".into()),
            (None, false) => Err("give status (e.g. 429) or operation: \"Failed\"".into()),
            (Some(s), false) if !(400..=599).contains(&s) => Err(format!("status {s} is not an error status")),
            _ if self.operation.is_some() && !self.is_operation_fault() => Err("operation must be \"Failed\"".into()),
            _ => Ok(()),
        }
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
}

/// The armed fault rules.
#[derive(Debug, Default)]
pub struct Faults {
    next_id: u64,
    rules: Vec<(Fault, u32)>,
}

impl Faults {
    pub fn add(&mut self, mut fault: Fault) -> Fault {
        self.next_id += 1;
        fault.id = self.next_id;
        let remaining = fault.count.unwrap_or(1).max(1);
        self.rules.push((fault.clone(), remaining));
        fault
    }

    pub fn list(&self) -> Vec<serde_json::Value> {
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

    /// If a status fault matches this request, consumes it and returns the error to answer with.
    pub fn take_request_fault(&mut self, method: &str, path: &str) -> Option<ArmError> {
        let fault = self.take(|f| f.status.is_some() && f.matches(method, path))?;
        let status = fault.status.unwrap_or(500);
        let code = fault.code.clone().unwrap_or_else(|| Fault::default_code(status).to_string());
        let message =
            fault.message.clone().unwrap_or_else(|| format!("armsim: injected fault #{} ({status} {code}).", fault.id));
        let mut err =
            ArmError::new(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code, message);
        let retry_after = fault.retry_after.or(if status == 429 || status == 503 { Some(1) } else { None });
        if let Some(secs) = retry_after {
            err = err.with_header("retry-after", secs.to_string());
        }
        Some(err)
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
    buckets: HashMap<(String, bool), Bucket>,
}

const READ_BURST: f64 = 250.0;
const READ_RATE: f64 = 25.0;
const WRITE_BURST: f64 = 200.0;
const WRITE_RATE: f64 = 10.0;

impl Throttle {
    /// Takes one request from the subscription's read (GET/HEAD) or write (PUT/PATCH/DELETE/POST)
    /// bucket. `Ok(remaining)` or `Err(retry_after_seconds)`.
    pub fn take(&mut self, subscription: &str, write: bool) -> Result<u64, u64> {
        let (burst, rate) = if write { (WRITE_BURST, WRITE_RATE) } else { (READ_BURST, READ_RATE) };
        let now = Instant::now();
        let b = self
            .buckets
            .entry((subscription.to_ascii_lowercase(), write))
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
