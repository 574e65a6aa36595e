//! Plumbing both controllers share: the kstatus condition triple computed from one verdict,
//! the Event a Ready change emits, and the clock.
//!
//! kstatus (sigs.k8s.io/cli-utils, "kstatus") reads `Ready`, `Reconciling` and `Stalled`: an
//! object is Current when Ready is True and neither Reconciling nor Stalled is; InProgress while
//! Reconciling is True; Failed while Stalled is True. One [`Verdict`] gives all three, so they
//! can never disagree.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::{Event, EventType};

use crate::api::ConditionSpec;
use crate::error::bounded;

/// Reason of `Stalled=False`.
pub const NOT_STALLED: &str = "NotStalled";

/// What one reconcile concluded about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Converged: Ready=True.
    Ready {
        /// PascalCase reason, e.g. `Provisioned`.
        reason: String,
        /// Detail.
        message: String,
    },
    /// Work under way or a transient failure being retried: Ready=False, Reconciling=True.
    Progressing {
        /// PascalCase reason, e.g. `Provisioning` or an error category.
        reason: String,
        /// Detail.
        message: String,
    },
    /// Needs a person (a spec change, a credential, another owner's resource): Ready=False,
    /// Stalled=True.
    Stalled {
        /// PascalCase reason: an error category.
        reason: String,
        /// What, where, what to do.
        message: String,
    },
}

impl Verdict {
    /// The Ready, Reconciling and Stalled conditions for this verdict (kstatus).
    pub fn conditions(&self) -> [ConditionSpec; 3] {
        match self {
            Verdict::Ready { reason, message } => [
                ConditionSpec::new("Ready", true, reason.clone(), message.clone()),
                ConditionSpec::new("Reconciling", false, "Converged", ""),
                ConditionSpec::new("Stalled", false, NOT_STALLED, ""),
            ],
            Verdict::Progressing { reason, message } => [
                ConditionSpec::new("Ready", false, reason.clone(), message.clone()),
                ConditionSpec::new("Reconciling", true, reason.clone(), message.clone()),
                ConditionSpec::new("Stalled", false, NOT_STALLED, ""),
            ],
            Verdict::Stalled { reason, message } => [
                ConditionSpec::new("Ready", false, reason.clone(), message.clone()),
                ConditionSpec::new("Reconciling", false, reason.clone(), ""),
                ConditionSpec::new("Stalled", true, reason.clone(), message.clone()),
            ],
        }
    }

    /// The verdict's reason.
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Ready { reason, .. } | Verdict::Progressing { reason, .. } | Verdict::Stalled { reason, .. } => {
                reason
            }
        }
    }
}

/// The Event to publish when the Ready condition's reason changed from `previous` to `now`
/// (one Event per change, not per reconcile): Normal when Ready or progressing normally,
/// Warning otherwise. The note is bounded to 1 KiB (Events API limit).
pub fn ready_change_event(previous: &[Condition], now: &[Condition], normal_reasons: &[&str]) -> Option<Event> {
    let ready = |conditions: &[Condition]| conditions.iter().find(|c| c.type_ == "Ready").cloned();
    let (before, after) = (ready(previous), ready(now)?);
    if before.as_ref().map(|c| &c.reason) == Some(&after.reason) {
        return None;
    }
    let normal = after.status == "True" || normal_reasons.contains(&after.reason.as_str());
    Some(Event {
        type_: if normal { EventType::Normal } else { EventType::Warning },
        reason: after.reason.clone(),
        note: Some(bounded(&after.message, 1024)),
        action: "Reconcile".into(),
        secondary: None,
    })
}

/// The current time, whole seconds (condition timestamps carry seconds).
pub fn now() -> Time {
    Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::merge_conditions;

    fn statuses(v: &Verdict) -> [bool; 3] {
        v.conditions().map(|c| c.status)
    }

    #[test]
    fn one_verdict_gives_a_consistent_triple() {
        let r = |s: &str| s.to_owned();
        assert_eq!(statuses(&Verdict::Ready { reason: r("Provisioned"), message: r("") }), [true, false, false]);
        assert_eq!(statuses(&Verdict::Progressing { reason: r("Provisioning"), message: r("") }), [false, true, false]);
        assert_eq!(statuses(&Verdict::Stalled { reason: r("AzureConflict"), message: r("x") }), [false, false, true]);
    }

    #[test]
    fn an_event_per_ready_reason_change_only() {
        let t = now();
        let progressing = Verdict::Progressing { reason: "Provisioning".into(), message: "m".into() };
        let stalled = Verdict::Stalled { reason: "AzureConflict".into(), message: "owned by x".into() };
        let a = merge_conditions(&[], &progressing.conditions(), Some(1), &t);
        let b = merge_conditions(&a, &stalled.conditions(), Some(1), &t);
        let first = ready_change_event(&[], &a, &["Provisioning"]);
        assert_eq!(first.map(|e| e.type_), Some(EventType::Normal));
        assert!(ready_change_event(&a, &a, &["Provisioning"]).is_none());
        let warning = ready_change_event(&a, &b, &["Provisioning"]);
        assert_eq!(warning.as_ref().map(|e| (e.type_, e.reason.as_str())), Some((EventType::Warning, "AzureConflict")));
    }
}
