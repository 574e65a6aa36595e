//! Progress-only status writes, at most one per stack per window.
//!
//! While a stack rolls out, every step of each Deployment (a pod created, updated, ready)
//! changes the stack's component counters, and each change was a status write: about five per
//! stack, more than its children's applies, all on a machine whose API server is also busy
//! rolling the Deployments out. A status whose conditions keep their status and reason (only
//! counters and messages move) waits until the window since the stack's last written status
//! has passed; a change of a condition (Ready, Stalled, Reconciling) or of the generation it
//! describes is written at once, so the stack's readiness is never reported late. A component
//! turning Ready while others still roll out is progress too (the ready count, `1/3` to
//! `2/3`): the components of a stack come up at about the same time, and writing each step at
//! once made most stacks cost four or five status writes instead of two or three. A component
//! that fails or conflicts, and a binding's readiness, are written at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::{ComponentState, SolutionStackStatus};

/// Entries kept before old ones (past the window, so without effect) are dropped.
const TRIM_AT: usize = 1024;

/// When each stack (by UID) last had a status written, and the window between progress-only
/// writes.
pub struct StatusPace {
    window: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

impl StatusPace {
    /// Progress-only writes of a stack at least `window` apart (a zero window: no pacing).
    pub fn new(window: Duration) -> Self {
        Self { window, last: Mutex::new(HashMap::new()) }
    }

    /// How long `next` must wait before it is written over `previous` for the stack with
    /// `uid`: `None` to write now (an unchanged status, a first status, anything that is not
    /// [`progress_only`], or a window that has passed), else the time left of the window.
    pub fn wait(
        &self,
        uid: &str,
        previous: Option<&SolutionStackStatus>,
        next: &SolutionStackStatus,
        now: Instant,
    ) -> Option<Duration> {
        if !previous.is_some_and(|p| p != next && progress_only(p, next)) {
            return None;
        }
        let last = self.last.lock().ok()?;
        let due = *last.get(uid)? + self.window;
        (due > now).then(|| due - now)
    }

    /// Records that a status of the stack with `uid` was written at `now`.
    pub fn written(&self, uid: &str, now: Instant) {
        let Ok(mut last) = self.last.lock() else { return };
        if last.len() >= TRIM_AT {
            let window = self.window;
            last.retain(|_, at| now.saturating_duration_since(*at) < window);
        }
        last.insert(uid.to_owned(), now);
    }
}

/// `next` differs from `previous` only in progress: the same observed generation, the same
/// conditions by type, status and reason, the same components, none of them entering or
/// leaving `Failed` or `Conflict`, and the same binding readiness; only replica counters,
/// the ready count, components moving between Waiting, Progressing and Ready, and messages
/// changed. The Ready condition (the whole stack's readiness) is never progress.
pub fn progress_only(previous: &SolutionStackStatus, next: &SolutionStackStatus) -> bool {
    let conditions = |s: &SolutionStackStatus| {
        s.conditions.iter().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect::<Vec<_>>()
    };
    let trouble = |state: ComponentState| matches!(state, ComponentState::Failed | ComponentState::Conflict);
    let components = |s: &SolutionStackStatus| {
        s.components.iter().map(|c| (c.name.clone(), trouble(c.state).then_some(c.state))).collect::<Vec<_>>()
    };
    let bindings = |s: &SolutionStackStatus| {
        s.bindings.iter().map(|b| (b.name.clone(), b.ready, b.reason.clone())).collect::<Vec<_>>()
    };
    previous.observed_generation == next.observed_generation
        && conditions(previous) == conditions(next)
        && components(previous) == components(next)
        && bindings(previous) == bindings(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BindingStatus, ComponentState, ComponentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    /// A stack of one component `web` rolling out: `replicas` pods, `state`, Ready `ready`.
    fn status(ready: &str, reason: &str, state: ComponentState, replicas: i32) -> SolutionStackStatus {
        SolutionStackStatus {
            observed_generation: Some(1),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: reason.into(),
                message: format!("{replicas} pods"),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                observed_generation: Some(1),
            }],
            ready: Some(if state == ComponentState::Ready { "1/1" } else { "0/1" }.into()),
            components: vec![ComponentStatus { name: "web".into(), state, replicas, ..Default::default() }],
            ..Default::default()
        }
    }

    #[test]
    fn counters_wait_for_the_window_and_readiness_does_not() {
        let pace = StatusPace::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let zero = status("False", "RollingOut", ComponentState::Progressing, 0);
        let one = status("False", "RollingOut", ComponentState::Progressing, 1);
        let two = status("False", "RollingOut", ComponentState::Progressing, 2);
        let ready = status("True", "Available", ComponentState::Ready, 2);
        // The first status of a stack: at once.
        assert_eq!(pace.wait("u", None, &zero, t0), None);
        pace.written("u", t0);
        // A counter 1 s later waits the second left of the window.
        assert_eq!(pace.wait("u", Some(&zero), &one, t0 + Duration::from_secs(1)), Some(Duration::from_secs(1)));
        // Readiness is written at once, window or not.
        assert_eq!(pace.wait("u", Some(&zero), &ready, t0 + Duration::from_secs(1)), None);
        // After the window: written.
        assert_eq!(pace.wait("u", Some(&one), &two, t0 + Duration::from_secs(2)), None);
        // An unchanged status is no write.
        assert_eq!(pace.wait("u", Some(&two), &two, t0 + Duration::from_millis(500)), None);
        // Another stack has a window of its own; nothing written for it yet.
        assert_eq!(pace.wait("v", Some(&zero), &one, t0), None);
    }

    #[test]
    fn a_failed_write_holds_nothing_back() {
        let pace = StatusPace::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let (zero, one) = (
            status("False", "RollingOut", ComponentState::Progressing, 0),
            status("False", "RollingOut", ComponentState::Progressing, 1),
        );
        // Only `written` starts a window: a status that was admitted but never written does not.
        assert_eq!(pace.wait("u", Some(&zero), &one, t0), None);
        assert_eq!(pace.wait("u", Some(&zero), &one, t0 + Duration::from_millis(10)), None);
    }

    #[test]
    fn the_stacks_readiness_and_trouble_are_not_progress() {
        let previous = status("False", "RollingOut", ComponentState::Progressing, 1);
        assert!(progress_only(&previous, &status("False", "RollingOut", ComponentState::Progressing, 3)));
        // A component turning Ready while the stack as a whole still rolls out is progress.
        let mut component_ready = previous.clone();
        component_ready.components[0].state = ComponentState::Ready;
        component_ready.ready = Some("1/1".into());
        assert!(progress_only(&previous, &component_ready));
        // A component failing, or its failure clearing, is not.
        for state in [ComponentState::Failed, ComponentState::Conflict] {
            let mut failed = previous.clone();
            failed.components[0].state = state;
            assert!(!progress_only(&previous, &failed));
            assert!(!progress_only(&failed, &previous));
        }
        let mut renamed = previous.clone();
        renamed.components[0].name = "api".into();
        assert!(!progress_only(&previous, &renamed));
        // The stack turning Ready is not.
        assert!(!progress_only(&previous, &status("True", "Available", ComponentState::Ready, 1)));
        let binding = |ready| BindingStatus { name: "db".into(), ready, ..Default::default() };
        let (mut unbound, mut bound) = (previous.clone(), previous.clone());
        unbound.bindings = vec![binding(false)];
        bound.bindings = vec![binding(true)];
        assert!(!progress_only(&unbound, &bound));
        let mut generation = previous.clone();
        generation.observed_generation = Some(2);
        assert!(!progress_only(&previous, &generation));
        assert!(!progress_only(&previous, &status("False", "WaitingForDependency", ComponentState::Progressing, 1)));
    }

    #[test]
    fn old_entries_are_dropped_once_many() {
        let pace = StatusPace::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..TRIM_AT {
            pace.written(&i.to_string(), t0);
        }
        pace.written("late", t0 + Duration::from_secs(2));
        assert_eq!(pace.last.lock().map(|l| l.len()).unwrap_or_default(), 1);
    }
}
