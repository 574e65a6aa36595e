//! The AzureResource status, pure: from the recorded status and what this reconcile did (or
//! why it failed) to the new status and its kstatus verdict. `lastTransitionTime` handling is
//! `merge_conditions`'; the driver writes the result only when it differs.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{AzureResourceStatus, DeletionPolicy, LocalRef, merge_conditions};
use crate::error::Error;
use crate::reconciler::Verdict;

/// Ready reason while ARM works.
pub const PROVISIONING: &str = "Provisioning";
/// Ready reason once converged.
pub const PROVISIONED: &str = "Provisioned";
/// Ready reason while the Azure resource is being deleted.
pub const DELETING: &str = "Deleting";
/// Stalled reason when a resource group holds resources this object does not own.
pub const DELETION_BLOCKED: &str = "DeletionBlocked";

/// What the reconcile achieved.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// ARM is working (an operation, or a provisioningState in progress): look again later.
    Progressing {
        /// The provisioningState last seen, if any.
        state: Option<String>,
        /// The operation to follow (on the configured endpoint), if any.
        operation: Option<String>,
        /// Hash of the desired state last sent.
        applied_hash: Option<String>,
        /// When to look again.
        after: Duration,
        /// Detail for the condition.
        message: String,
    },
    /// Converged; the binding Secret is written.
    Provisioned {
        /// The provisioningState.
        state: Option<String>,
        /// Hash of the desired state last sent.
        applied_hash: Option<String>,
        /// Non-secret outputs.
        outputs: BTreeMap<String, String>,
        /// The binding Secret's name.
        binding: String,
        /// Something a person should know (e.g. a binding key left out, and why).
        note: Option<String>,
    },
    /// Deleting in Azure, or blocked from deleting (Stalled when `blocked`).
    Deleting {
        /// Detail for the condition.
        message: String,
        /// A person must act (foreign resources in a group).
        blocked: bool,
    },
}

/// Where the resource is, once resolved.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// Azure name.
    pub name: &'a str,
    /// Subscription.
    pub subscription: &'a str,
    /// ARM id.
    pub id: &'a str,
    /// Deletion policy in effect.
    pub policy: DeletionPolicy,
}

/// Inputs of [`compute`].
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The status as recorded.
    pub recorded: &'a AzureResourceStatus,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The target, when resolution got that far.
    pub target: Option<Target<'a>>,
    /// What happened.
    pub result: Result<&'a Outcome, &'a Error>,
    /// Why the recorded operation was dropped, if it was.
    pub dropped: Option<&'a str>,
    /// Now (seconds).
    pub now: &'a Time,
}

/// The new status and its verdict. Pure.
pub fn compute(inputs: &Inputs<'_>) -> (AzureResourceStatus, Verdict) {
    let mut status = inputs.recorded.clone();
    status.observed_generation = inputs.generation;
    if let Some(t) = inputs.target {
        status.azure_name = Some(t.name.to_owned());
        status.subscription_id = Some(t.subscription.to_owned());
        status.deletion_policy = Some(t.policy);
    }
    if inputs.dropped.is_some() {
        status.operation = None;
        status.operation_start_time = None;
    }
    let note = |message: String| match inputs.dropped {
        Some(dropped) => format!("{message} ({dropped})"),
        None => message,
    };
    let verdict = match inputs.result {
        Ok(Outcome::Progressing { state, operation, applied_hash, after: _, message }) => {
            if status.operation.as_ref() != operation.as_ref() || status.operation_start_time.is_none() {
                status.operation_start_time = operation.as_ref().map(|_| inputs.now.clone());
            }
            status.operation = operation.clone();
            status.provisioning_state = state.clone().or(status.provisioning_state);
            status.applied_hash = applied_hash.clone();
            if let Some(t) = inputs.target {
                status.resource_id = Some(t.id.to_owned());
            }
            Verdict::Progressing { reason: PROVISIONING.into(), message: note(message.clone()) }
        }
        Ok(Outcome::Provisioned { state, applied_hash, outputs, binding, note: extra }) => {
            status.operation = None;
            status.operation_start_time = None;
            status.provisioning_state = Some(state.clone().unwrap_or_else(|| "Succeeded".into()));
            status.applied_hash = applied_hash.clone();
            status.outputs = outputs.clone();
            status.binding = Some(LocalRef { name: binding.clone() });
            let id = inputs.target.map(|t| t.id).unwrap_or_default();
            if let Some(t) = inputs.target {
                status.resource_id = Some(t.id.to_owned());
            }
            let message = match extra {
                Some(extra) => format!("{id} is provisioned; {extra}"),
                None => format!("{id} is provisioned"),
            };
            Verdict::Ready { reason: PROVISIONED.into(), message: note(message) }
        }
        Ok(Outcome::Deleting { message, blocked: false }) => {
            Verdict::Progressing { reason: DELETING.into(), message: message.clone() }
        }
        Ok(Outcome::Deleting { message, blocked: true }) => {
            Verdict::Stalled { reason: DELETION_BLOCKED.into(), message: message.clone() }
        }
        Err(error) => {
            let category = error.category();
            // An operation that ended, or a refusal, leaves nothing to follow.
            if !category.is_transient() {
                status.operation = None;
                status.operation_start_time = None;
            }
            let message = note(error.to_string());
            if category.stalls() {
                Verdict::Stalled { reason: category.as_str().into(), message }
            } else {
                Verdict::Progressing { reason: category.as_str().into(), message }
            }
        }
    };
    status.conditions = merge_conditions(&status.conditions, &verdict.conditions(), inputs.generation, inputs.now);
    (status, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::arm::ArmError;
    use crate::error::Category;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap_or_default())
    }

    const TARGET: Target<'static> =
        Target { name: "cache", subscription: "sub", id: "/subscriptions/sub/x", policy: DeletionPolicy::Delete };

    fn inputs<'a>(
        recorded: &'a AzureResourceStatus,
        result: Result<&'a Outcome, &'a Error>,
        now: &'a Time,
    ) -> Inputs<'a> {
        Inputs { recorded, generation: Some(3), target: Some(TARGET), result, dropped: None, now }
    }

    fn triple(status: &AzureResourceStatus) -> Vec<(String, String, String)> {
        status.conditions.iter().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect()
    }

    fn progressing(operation: Option<&str>) -> Outcome {
        Outcome::Progressing {
            state: Some("Creating".into()),
            operation: operation.map(str::to_owned),
            applied_hash: Some("h".into()),
            after: Duration::from_secs(2),
            message: "provisioningState Creating".into(),
        }
    }

    #[test]
    fn verdicts_by_outcome_and_error() {
        let recorded = AzureResourceStatus::default();
        let now = at(100);
        let provisioned = Outcome::Provisioned {
            state: None,
            applied_hash: Some("h".into()),
            outputs: BTreeMap::from([("host".into(), "x".into())]),
            binding: "cache-binding".into(),
            note: Some("the binding has no password key".into()),
        };
        let throttled = Error::arm("GET x", ArmError::Throttled { retry_after: Duration::from_secs(3) });
        let rejected =
            Error::arm("PUT x", ArmError::Api { status: 400, code: "InvalidSku".into(), message: "m".into() });
        let auth = Error::arm("GET x", ArmError::Auth("401 InvalidAuthenticationToken: m".into()));
        let conflict = Error::refused(Category::AzureConflict, "owned by another");
        let blocked = Outcome::Deleting { message: "holds foreign".into(), blocked: true };
        let deleting = Outcome::Deleting { message: "deleting".into(), blocked: false };
        let t = |s: &str| s.to_owned();
        #[rustfmt::skip]
        type Row<'a> = (&'a str, Result<&'a Outcome, &'a Error>, [&'a str; 3], &'a str);
        let rows: Vec<Row<'_>> = vec![
            ("provisioned", Ok(&provisioned), ["True", "False", "False"], "Provisioned"),
            ("deletion blocked", Ok(&blocked), ["False", "False", "True"], "DeletionBlocked"),
            ("deleting", Ok(&deleting), ["False", "True", "False"], "Deleting"),
            ("throttled", Err(&throttled), ["False", "True", "False"], "AzureThrottled"),
            ("rejected", Err(&rejected), ["False", "False", "True"], "AzureRejected"),
            ("auth", Err(&auth), ["False", "False", "True"], "AzureAuth"),
            ("conflict", Err(&conflict), ["False", "False", "True"], "AzureConflict"),
        ];
        for (name, result, statuses, reason) in rows {
            let (status, verdict) = compute(&inputs(&recorded, result, &now));
            let got: Vec<_> = triple(&status).into_iter().map(|(_, s, _)| s).collect();
            assert_eq!(got, statuses.map(t).to_vec(), "{name}");
            assert_eq!(verdict.reason(), reason, "{name}");
            assert!(status.conditions.iter().all(|c| c.observed_generation == Some(3)), "{name}");
        }
        let (status, _) = compute(&inputs(&recorded, Ok(&provisioned), &now));
        assert_eq!(status.binding.map(|b| b.name).as_deref(), Some("cache-binding"));
        assert_eq!(status.provisioning_state.as_deref(), Some("Succeeded"));
        assert!(status.conditions[0].message.contains("no password"), "{:?}", status.conditions[0]);
    }

    #[test]
    fn operation_start_time_is_kept_while_the_same_operation_runs() {
        let (first, _) =
            compute(&inputs(&AzureResourceStatus::default(), Ok(&progressing(Some("https://arm/op/1"))), &at(100)));
        assert_eq!(first.operation_start_time, Some(at(100)));
        let (second, _) = compute(&inputs(&first, Ok(&progressing(Some("https://arm/op/1"))), &at(160)));
        assert_eq!(second.operation_start_time, Some(at(100)));
        assert_eq!(second.conditions, first.conditions, "nothing changed: the status stays byte-identical");
        let (third, _) = compute(&inputs(&second, Ok(&progressing(Some("https://arm/op/2"))), &at(200)));
        assert_eq!(third.operation_start_time, Some(at(200)));
        let (polling, _) = compute(&inputs(&third, Ok(&progressing(None)), &at(210)));
        assert_eq!((polling.operation, polling.operation_start_time), (None, None));
    }

    #[test]
    fn ended_or_dropped_operations_are_cleared() {
        let (running, _) =
            compute(&inputs(&AzureResourceStatus::default(), Ok(&progressing(Some("https://arm/op/1"))), &at(1)));
        let failed = Error::refused(Category::AzureOperationFailed, "ended Failed: Quota: m");
        let (after, verdict) = compute(&inputs(&running, Err(&failed), &at(2)));
        assert_eq!(after.operation, None);
        assert_eq!(verdict.reason(), "AzureOperationFailed");
        // A transient error while following keeps the operation to follow next time.
        let throttled = Error::arm("GET op", ArmError::Throttled { retry_after: Duration::from_secs(1) });
        let (kept, _) = compute(&inputs(&running, Err(&throttled), &at(2)));
        assert!(kept.operation.is_some());
        let two = at(2);
        let dropped =
            Inputs { dropped: Some("the operation URL answered 404"), ..inputs(&running, Err(&throttled), &two) };
        let (status, verdict) = compute(&dropped);
        assert_eq!(status.operation, None);
        assert!(matches!(verdict, Verdict::Progressing { message, .. } if message.contains("404")));
    }
}
