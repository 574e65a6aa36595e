//! Turning one raw ARM answer (status, headers, body bytes) into a typed one. Pure, and the
//! only place untrusted ARM bytes are read: every header and body is bounded and parsed
//! defensively, so nothing ARM (or whatever answers in its place) sends can panic the
//! operator. A property test below feeds it arbitrary bytes.
//!
//! Rules from the ARM RPC ("Azure Resource Manager resource provider contract", "Asynchronous
//! operations") and RFC 9110 §10.2.3 (`Retry-After` is delta-seconds or an HTTP-date).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::error::bounded;

/// Largest ARM response body read, in bytes (8 MiB). A larger body is
/// [`ArmError::BodyTooLarge`]; ARM's own answers for the resources we manage are a few KiB.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Longest wait a `Retry-After` may impose (15 minutes); longer values are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// Shortest wait: `Retry-After: 0` (or a date in the past) reads as one second, so a
/// misbehaving endpoint cannot make the operator spin.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Wait after a 429/503 that carries no usable `Retry-After` (seconds).
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(10);

/// Longest ARM error message kept (bytes); the rest is cut.
const MAX_MESSAGE: usize = 300;

/// An ARM failure, with what the operator does about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArmError {
    /// 429/503, now or earlier for this subscription and principal (a pause still running):
    /// requeue after the wait (bounded by [`MAX_RETRY_AFTER`]).
    #[error("Azure throttled the request; retrying in {}s", retry_after.as_secs())]
    Throttled {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The operator's own request budget for the subscription and principal
    /// (`--azure-budget-percent` of ARM's token buckets) has no token for a while: requeue
    /// after the wait. Nothing was sent to ARM.
    #[error("the ARM request budget of this subscription and principal is spent for now; retrying in {:.1}s", retry_after.as_secs_f64())]
    Budget {
        /// When the next token is due.
        retry_after: Duration,
    },
    /// 401/403 or a credential that cannot get a token. The message is ours or ARM's error
    /// code and bounded message; never a credential value.
    #[error("Azure refused the credential: {0}")]
    Auth(String),
    /// Any other ARM error response (`{error:{code,message}}`; code and message may be empty
    /// when the body is not ARM's error shape).
    #[error("ARM {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// ARM error code, e.g. `ResourceGroupNotFound`.
        code: String,
        /// ARM error message, at most 300 bytes.
        message: String,
    },
    /// The request could not be sent, or its answer not read in time.
    #[error("ARM request failed: {0}")]
    Transport(String),
    /// The answer's body is larger than [`MAX_BODY_BYTES`].
    #[error("ARM answered {status} with a body over {limit} bytes; not read")]
    BodyTooLarge {
        /// HTTP status.
        status: u16,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A successful answer whose body is not JSON.
    #[error("ARM answered {status} with a body that is not JSON")]
    InvalidBody {
        /// HTTP status.
        status: u16,
    },
    /// An operation URL (from status or a header) outside the configured ARM endpoint: it is
    /// never called, because the call would carry the bearer token to that host.
    #[error("operation URL on {origin} is outside the configured ARM endpoint; not followed")]
    UntrustedUrl {
        /// `scheme://host:port` of the URL (no path or query), or `unparseable`.
        origin: String,
    },
}

impl ArmError {
    /// The ARM error code, when ARM answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::Api { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }

    /// The HTTP status ARM answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Api { status, .. } | ArmError::BodyTooLarge { status, .. } | ArmError::InvalidBody { status } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// Whether waiting (without a spec change) can help. Per the ARM RPC, 4xx answers other
    /// than 404 (gone), 408 (timeout), 409 (conflicting operation in progress) and 429
    /// (throttled) describe the request itself: sending it again unchanged fails again.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ArmError::Api { status, .. } if (400..500).contains(status) && !matches!(status, 404 | 408 | 409 | 429))
            || matches!(self, ArmError::UntrustedUrl { .. })
    }
}

/// An ARM answer: status, the interesting headers, and the JSON body (Null when empty).
#[derive(Clone, Debug, PartialEq)]
pub struct ArmResponse {
    /// HTTP status.
    pub status: u16,
    /// `Azure-AsyncOperation`, else `Location`, when on the configured endpoint: where to
    /// follow a long-running operation.
    pub operation: Option<String>,
    /// The origin of an operation URL that was dropped because it is outside the configured
    /// endpoint (reported in a condition; never called).
    pub untrusted_operation: Option<String>,
    /// `Retry-After`, bounded to [`MIN_RETRY_AFTER`]..=[`MAX_RETRY_AFTER`].
    pub retry_after: Option<Duration>,
    /// JSON body (Null when empty).
    pub body: Value,
}

/// One raw answer as read off the wire: status, headers (names lower-case), and at most
/// [`MAX_BODY_BYTES`] of body (`truncated` when more was sent).
#[derive(Clone, Debug, Default)]
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// Headers by lower-case name (the last value wins).
    pub headers: BTreeMap<String, String>,
    /// The body, cut at [`MAX_BODY_BYTES`].
    pub body: Vec<u8>,
    /// Whether the body was longer than [`MAX_BODY_BYTES`].
    pub truncated: bool,
}

/// The headers [`interpret`] reads; [`RawAnswer::headers`] need hold no others.
pub const HEADERS: [&str; 5] = [
    "azure-asyncoperation",
    "location",
    "retry-after",
    "x-ms-ratelimit-remaining-subscription-reads",
    "x-ms-ratelimit-remaining-subscription-writes",
];

/// `scheme://host:port` of a URL (port made explicit), or `None` when it does not parse.
pub fn origin(url: &str) -> Option<String> {
    let url = azure_core::http::Url::parse(url).ok()?;
    Some(format!("{}://{}:{}", url.scheme(), url.host_str()?, url.port_or_known_default()?))
}

/// Whether `url` may be called with the bearer token: same scheme, host and port as the
/// configured ARM `endpoint`.
pub fn same_origin(endpoint: &str, url: &str) -> bool {
    matches!((origin(endpoint), origin(url)), (Some(a), Some(b)) if a == b)
}

/// Parses `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date, relative to `now`.
/// The result is clamped to [`MIN_RETRY_AFTER`]..=[`MAX_RETRY_AFTER`] (so `0`, a past date or
/// an absurd number are all safe); `None` when the value is neither form.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: any length that overflows u64 is simply "very long".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX).min(MAX_RETRY_AFTER.as_secs()))
    } else {
        let date = httpdate::parse_http_date(value).ok()?;
        date.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER))
}

/// Interprets a raw answer from the ARM `endpoint` at time `now`.
///
/// Errors: 429/503 → [`ArmError::Throttled`]; 401/403 → [`ArmError::Auth`]; other non-2xx →
/// [`ArmError::Api`] (code and message from `{error:{code,message}}` when present); a body over
/// the cap → [`ArmError::BodyTooLarge`]; a 2xx body that is not JSON → [`ArmError::InvalidBody`].
pub fn interpret(raw: &RawAnswer, endpoint: &str, now: SystemTime) -> Result<ArmResponse, ArmError> {
    let header = |name: &str| raw.headers.get(name).map(String::as_str);
    let retry = header("retry-after").and_then(|v| retry_after(v, now));
    let status = raw.status;
    if status == 429 || status == 503 {
        return Err(ArmError::Throttled { retry_after: retry.unwrap_or(DEFAULT_THROTTLE_WAIT) });
    }
    if raw.truncated {
        return Err(ArmError::BodyTooLarge { status, limit: MAX_BODY_BYTES });
    }
    let parsed: Option<Value> = if raw.body.iter().all(u8::is_ascii_whitespace) {
        Some(Value::Null)
    } else {
        serde_json::from_slice(&raw.body).ok()
    };
    if !(200..300).contains(&status) {
        // ARM's error shape is expected but not trusted: anything else gives empty fields.
        let body = parsed.unwrap_or(Value::Null);
        let text =
            |pointer: &str| body.pointer(pointer).and_then(Value::as_str).map(|s| bounded(&printable(s), MAX_MESSAGE));
        let code = text("/error/code").unwrap_or_default();
        let message = text("/error/message").unwrap_or_default();
        return Err(match status {
            401 | 403 => ArmError::Auth(format!("{status} {code}: {message}")),
            _ => ArmError::Api { status, code: bounded(&code, 100), message },
        });
    }
    let body = parsed.ok_or(ArmError::InvalidBody { status })?;
    let (mut operation, mut untrusted_operation) = (None, None);
    if let Some(url) = header("azure-asyncoperation").or_else(|| header("location")) {
        if same_origin(endpoint, url) {
            operation = Some(url.to_owned());
        } else {
            untrusted_operation =
                Some(origin(url).map(|o| bounded(&printable(&o), 200)).unwrap_or("unparseable".into()));
        }
    }
    Ok(ArmResponse { status, operation, untrusted_operation, retry_after: retry, body })
}

/// Control characters out: ARM text goes into conditions, Events and logs.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
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

    /// The state of a resource body: `properties.provisioningState` when it is a string
    /// (anything else, e.g. a number, reads as in progress so the resource is read again).
    pub fn of_resource(body: &Value) -> (Self, Option<String>) {
        match body.pointer("/properties/provisioningState") {
            None | Some(Value::Null) => (Provisioning::Succeeded, None),
            Some(Value::String(s)) => (Provisioning::of(Some(s)), Some(bounded(&printable(s), 64))),
            Some(_) => (Provisioning::InProgress, Some("Unknown".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ENDPOINT: &str = "https://management.azure.com";

    fn raw(status: u16, headers: &[(&str, &str)], body: &str) -> RawAnswer {
        RawAnswer {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
            truncated: false,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn provider_specific_states_are_in_progress() {
        assert_eq!(Provisioning::of(None), Provisioning::Succeeded);
        assert_eq!(Provisioning::of(Some("Succeeded")), Provisioning::Succeeded);
        assert_eq!(Provisioning::of(Some("Creating")), Provisioning::InProgress);
        assert_eq!(Provisioning::of(Some("Accepted")), Provisioning::InProgress);
        assert_eq!(Provisioning::of(Some("Failed")), Provisioning::Failed);
        assert_eq!(Provisioning::of(Some("Canceled")), Provisioning::Canceled);
        assert_eq!(
            Provisioning::of_resource(&serde_json::json!({"properties": {"provisioningState": 7}})).0,
            Provisioning::InProgress
        );
    }

    #[test]
    fn retry_after_is_bounded_in_both_forms() {
        let now = at(784_111_000);
        // The value that used to overflow `Instant + Duration` and exit the process.
        assert_eq!(retry_after("18446744073709551615", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("99999999999999999999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("0", now), Some(MIN_RETRY_AFTER));
        assert_eq!(retry_after(" 17 ", now), Some(Duration::from_secs(17)));
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777.
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(777)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(784_200_000)), Some(MIN_RETRY_AFTER));
        assert_eq!(retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn throttling_without_a_usable_wait_gets_the_default() {
        let e = interpret(&raw(429, &[("retry-after", "garbage")], ""), ENDPOINT, at(0));
        assert_eq!(e, Err(ArmError::Throttled { retry_after: DEFAULT_THROTTLE_WAIT }));
        let e = interpret(&raw(503, &[("retry-after", "18446744073709551615")], "<html>"), ENDPOINT, at(0));
        assert_eq!(e, Err(ArmError::Throttled { retry_after: MAX_RETRY_AFTER }));
    }

    #[test]
    fn bodies_are_bounded_and_must_be_json() {
        let big = RawAnswer { truncated: true, ..raw(200, &[], "{") };
        assert_eq!(
            interpret(&big, ENDPOINT, at(0)),
            Err(ArmError::BodyTooLarge { status: 200, limit: MAX_BODY_BYTES })
        );
        assert_eq!(
            interpret(&raw(200, &[], "<html>oops"), ENDPOINT, at(0)),
            Err(ArmError::InvalidBody { status: 200 })
        );
        assert_eq!(interpret(&raw(202, &[], "  \n"), ENDPOINT, at(0)).map(|r| r.body), Ok(Value::Null));
        // An error answer that is not ARM's error shape still keeps its status.
        assert_eq!(
            interpret(&raw(400, &[], "not json"), ENDPOINT, at(0)),
            Err(ArmError::Api { status: 400, code: String::new(), message: String::new() })
        );
        let e =
            interpret(&raw(400, &[], r#"{"error":{"code":"InvalidX","message":"line\u0000two"}}"#), ENDPOINT, at(0));
        assert_eq!(e, Err(ArmError::Api { status: 400, code: "InvalidX".into(), message: "line two".into() }));
    }

    #[test]
    fn operation_urls_off_the_endpoint_are_dropped() {
        let ours = interpret(
            &raw(201, &[("azure-asyncoperation", "https://management.azure.com:443/op/1")], "{}"),
            ENDPOINT,
            at(0),
        );
        assert_eq!(ours.map(|r| r.operation), Ok(Some("https://management.azure.com:443/op/1".into())));
        for url in
            ["https://evil.example/op", "http://management.azure.com/op", "https://management.azure.com:8443/op", "::"]
        {
            let r = interpret(&raw(202, &[("location", url)], ""), ENDPOINT, at(0));
            let r = r.unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(r.operation, None, "{url}");
            assert!(r.untrusted_operation.is_some(), "{url}");
        }
        assert!(!same_origin(ENDPOINT, "https://management.azure.com.evil.example/x"));
        assert!(same_origin("https://127.0.0.1:8443/", "https://127.0.0.1:8443/op?x=1"));
    }

    #[test]
    fn permanent_errors_are_the_4xx_that_retrying_cannot_fix() {
        let api = |status| ArmError::Api { status, code: String::new(), message: String::new() };
        assert!(api(400).is_permanent());
        assert!(api(422).is_permanent());
        for status in [404, 408, 409, 429, 500, 502] {
            assert!(!api(status).is_permanent(), "{status}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// No status, header value or body bytes make interpretation panic, and every wait it
        /// returns is within the bounds.
        #[test]
        fn any_answer_is_handled(
            status in 0u16..1000,
            retry in proptest::option::of(any::<String>()),
            location in proptest::option::of(any::<String>()),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            json_body in proptest::option::of("[\\{\\}\\[\\]\":,0-9a-zA-Z ]{0,64}"),
            truncated in any::<bool>(),
            now in 0u64..u64::from(u32::MAX) * 4,
        ) {
            let mut headers = BTreeMap::new();
            if let Some(r) = retry { headers.insert("retry-after".to_owned(), r); }
            if let Some(l) = location { headers.insert("location".to_owned(), l); }
            let body = json_body.map(String::into_bytes).unwrap_or(body);
            let answer = RawAnswer { status, headers, body, truncated };
            match interpret(&answer, ENDPOINT, at(now)) {
                Ok(r) => {
                    prop_assert!(r.retry_after.is_none_or(|w| (MIN_RETRY_AFTER..=MAX_RETRY_AFTER).contains(&w)));
                    prop_assert!(r.operation.is_none_or(|u| same_origin(ENDPOINT, &u)));
                    let _ = Provisioning::of_resource(&r.body);
                }
                Err(ArmError::Throttled { retry_after }) => prop_assert!(retry_after <= MAX_RETRY_AFTER),
                Err(e) => prop_assert!(e.to_string().len() < 1000),
            }
        }
    }
}
