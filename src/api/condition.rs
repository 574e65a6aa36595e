//! Conditions as the Kubernetes API conventions define them ("typical status properties":
//! type, status, observedGeneration, lastTransitionTime, reason, message), and the pure merge
//! that keeps `lastTransitionTime` while a condition's status does not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Maximum bytes of a condition message (the API allows 32 KiB; a status line needs far less).
pub const MAX_MESSAGE: usize = 1024;

/// A condition as computed by a controller, before timestamps are assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionSpec {
    /// Condition type, e.g. `Ready`.
    pub type_: &'static str,
    /// True or False.
    pub status: bool,
    /// PascalCase reason: an error category or a progress reason.
    pub reason: String,
    /// Human-readable detail; cut to [`MAX_MESSAGE`] bytes.
    pub message: String,
}

impl ConditionSpec {
    /// A condition of `type_` with the given status, reason and message.
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status, reason: reason.into(), message: message.into() }
    }
}

/// Merges freshly computed conditions over the previous ones: `lastTransitionTime` is kept
/// when a condition's status is unchanged and set to `now` when it flips or first appears;
/// conditions no longer computed are dropped. Output is in the order of `desired`.
pub fn merge_conditions(
    previous: &[Condition],
    desired: &[ConditionSpec],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == d.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: d.type_.to_owned(),
                status: status.to_owned(),
                reason: d.reason.clone(),
                message: crate::error::bounded(&d.message, MAX_MESSAGE),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap_or_default())
    }

    #[test]
    fn keeps_transition_time_while_status_holds() {
        let first = merge_conditions(&[], &[ConditionSpec::new("Ready", false, "RollingOut", "1/2")], Some(1), &at(10));
        let second = merge_conditions(
            &first,
            &[ConditionSpec::new("Ready", false, "RollingOut", "2/2 updated")],
            Some(2),
            &at(20),
        );
        assert_eq!(second[0].last_transition_time, at(10));
        assert_eq!(second[0].message, "2/2 updated");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn flips_set_new_transition_time() {
        let first = merge_conditions(&[], &[ConditionSpec::new("Ready", false, "RollingOut", "")], Some(1), &at(10));
        let second = merge_conditions(&first, &[ConditionSpec::new("Ready", true, "Available", "")], Some(1), &at(20));
        assert_eq!(second[0].status, "True");
        assert_eq!(second[0].last_transition_time, at(20));
    }

    #[test]
    fn dropped_conditions_disappear_and_order_follows_desired() {
        let first = merge_conditions(
            &[],
            &[ConditionSpec::new("Ready", false, "X", ""), ConditionSpec::new("Paused", true, "Paused", "")],
            Some(1),
            &at(10),
        );
        let second = merge_conditions(&first, &[ConditionSpec::new("Ready", false, "X", "")], Some(1), &at(20));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].type_, "Ready");
    }

    #[test]
    fn long_messages_are_bounded() {
        let long = "x".repeat(5000);
        let merged = merge_conditions(&[], &[ConditionSpec::new("Ready", false, "X", long)], None, &at(1));
        assert!(merged[0].message.len() <= MAX_MESSAGE);
    }
}
