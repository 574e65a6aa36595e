//! Observe: what ARM holds now. Follows the recorded long-running operation (only on the
//! configured endpoint and within the deadline), then GETs the resource. Reads only.
//!
//! ARM RPC, "Asynchronous operations": an `Azure-AsyncOperation` URL answers 200 with
//! `{status, error}` (Succeeded, Failed and Canceled are terminal; anything else runs); a
//! `Location` URL answers 202 while the operation runs and the final answer (200/201/204)
//! once it is done (an error status there is the operation's failure); either may answer 404
//! once ARM forgets the operation.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use crate::api::AzureResourceStatus;
use crate::azure::arm::ArmError;
use crate::azure::plan::{Observed, Operation};
use crate::azure::resolve::Target;
use crate::azure::response::Provisioning;
use crate::error::{Error, Result, bounded};

/// Whether the recorded operation is older than `deadline` at `now` (pure). A start time in
/// the future (clock skew, or someone else's write) counts from now.
pub fn expired(recorded: &AzureResourceStatus, now: &Time, deadline: Duration) -> bool {
    let Some(started) = &recorded.operation_start_time else { return false };
    let age = now.0.as_second().saturating_sub(started.0.as_second());
    age > 0 && age.unsigned_abs() > deadline.as_secs()
}

/// The state of an operation from one poll answer (pure).
pub fn classify(status: u16, body: &Value, retry_after: Option<Duration>) -> Operation {
    if status == 202 {
        return Operation::Running { after: retry_after };
    }
    let Some(state) = body.get("status").and_then(Value::as_str) else {
        // A Location poll's final answer is the resource (or nothing): done.
        return Operation::Succeeded;
    };
    match Provisioning::of(Some(state)) {
        Provisioning::Succeeded => Operation::Succeeded,
        Provisioning::InProgress => Operation::Running { after: retry_after },
        Provisioning::Failed | Provisioning::Canceled => {
            let text = |p: &str| body.pointer(p).and_then(Value::as_str).map(|s| bounded(s, 300)).unwrap_or_default();
            let code = Some(text("/error/code")).filter(|c| !c.is_empty()).unwrap_or_else(|| "OperationFailed".into());
            Operation::Ended { state: bounded(state, 32), code: bounded(&code, 100), message: text("/error/message") }
        }
    }
}

/// Follows the recorded operation (if any), then reads the resource unless the operation
/// still runs.
///
/// Errors: ARM errors other than 404 ([`Error::Arm`]).
pub async fn observe(
    target: &Target,
    recorded: &AzureResourceStatus,
    now: &Time,
    deadline: Duration,
) -> Result<Observed> {
    let operation = match recorded.operation.as_deref() {
        None => Operation::None,
        Some(url) if !target.arm.trusts(url) => Operation::Untrusted {
            origin: crate::azure::response::origin(url).unwrap_or_else(|| "an unparseable URL".into()),
        },
        Some(_) if expired(recorded, now, deadline) => Operation::Expired,
        Some(url) => match target.arm.operation(&target.subscription, url).await {
            Ok(answer) => classify(answer.status, &answer.body, answer.retry_after),
            Err(ArmError::Api { status: 404, .. }) => Operation::Gone,
            // A `Location` poll answers with the operation's final status: an error status
            // there is the operation's failure, not a failed poll.
            Err(ArmError::Api { status, code, message }) if !matches!(status, 408 | 409) => Operation::Ended {
                state: "Failed".into(),
                code: if code.is_empty() { format!("HTTP{status}") } else { code },
                message,
            },
            Err(error) => return Err(Error::arm("follow the ARM operation", error)),
        },
    };
    if matches!(operation, Operation::Running { .. } | Operation::Ended { .. }) {
        return Ok(Observed { resource: None, operation });
    }
    let resource = target
        .arm
        .get(&target.subscription, &target.id, &target.api_version)
        .await
        .map_err(|e| Error::arm(format!("GET {}", target.id), e))?
        .map(|r| r.body)
        .filter(|body| body.is_object());
    Ok(Observed { resource, operation })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap_or_default())
    }

    #[test]
    fn operation_answers_are_classified() {
        let after = Some(Duration::from_secs(3));
        assert_eq!(classify(202, &Value::Null, after), Operation::Running { after });
        assert_eq!(classify(200, &json!({"status": "InProgress"}), None), Operation::Running { after: None });
        assert_eq!(classify(200, &json!({"status": "Succeeded"}), None), Operation::Succeeded);
        assert_eq!(classify(200, &json!({"name": "x", "properties": {}}), None), Operation::Succeeded);
        assert_eq!(classify(204, &Value::Null, None), Operation::Succeeded);
        assert_eq!(
            classify(
                200,
                &json!({"status": "Failed", "error": {"code": "QuotaExceeded", "message": "no cores"}}),
                None
            ),
            Operation::Ended { state: "Failed".into(), code: "QuotaExceeded".into(), message: "no cores".into() }
        );
        assert_eq!(
            classify(200, &json!({"status": "Canceled", "error": 7}), None),
            Operation::Ended { state: "Canceled".into(), code: "OperationFailed".into(), message: String::new() }
        );
    }

    #[test]
    fn operations_expire_after_the_deadline() {
        let hour = Duration::from_secs(3600);
        let status = |start| AzureResourceStatus { operation_start_time: Some(at(start)), ..Default::default() };
        assert!(!expired(&AzureResourceStatus::default(), &at(10_000), hour));
        assert!(!expired(&status(1000), &at(4600), hour));
        assert!(expired(&status(1000), &at(4601), hour));
        assert!(!expired(&status(9000), &at(1000), hour), "a start in the future is not expired");
        assert!(expired(&status(i64::from(i32::MIN)), &at(i64::from(i32::MAX)), hour));
    }
}
