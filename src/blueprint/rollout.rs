//! A blueprint's rollout, planned from what its instances report (pure): which stacks move to
//! which revision now, and where the rollout stands.
//!
//! Only stacks that track a version range containing the target take part (a stack pinned to
//! an exact version moves when a person changes it; a paused stack is never written; a stack
//! Stalled on another revision needs a person first and is left where it is). Stacks above the target (a rollback:
//! `spec.rollout.version` set to an older revision) return to it at once. Stacks below it move
//! in waves: the canary wave (the stacks the canary selector picks), then batches in
//! namespace/name order. A wave starts only when every stack of the waves before runs the
//! target and is Ready (or failed within the budget), and has soaked; a stack of a started
//! wave that is Stalled on the target, or of the current wave not Ready on it within the wave
//! deadline, is a failure, and more failures than the budget halt the rollout: no further
//! stack moves until the target changes (a rollback, or a fixed revision). A completed
//! rollout stays complete until the target changes.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use semver::Version;

use crate::api::blueprint::{RolloutSpec, RolloutStatus};
use crate::blueprint::Wanted;

/// Default stacks per wave after the canary: a quarter of the tracking stacks.
pub const DEFAULT_BATCH: &str = "25%";
/// Default seconds a wave's stacks have to become Ready on the target.
pub const DEFAULT_WAVE_DEADLINE: i64 = 600;
/// Failed stacks named in the status at most.
pub const MAX_NAMED: usize = 10;

/// Phases of `status.rollout.phase`.
pub mod phase {
    /// Waves are moving.
    pub const PROGRESSING: &str = "Progressing";
    /// The last started wave is Ready; the next starts when it has soaked.
    pub const SOAKING: &str = "Soaking";
    /// `spec.rollout.paused`.
    pub const PAUSED: &str = "Paused";
    /// More failures than the budget: no further wave.
    pub const HALTED: &str = "Halted";
    /// Every tracking stack runs the target and is Ready.
    pub const COMPLETE: &str = "Complete";
}

/// What one instance reports (its stack controller's last reconcile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `namespace/name`.
    pub key: String,
    /// `spec.blueprint.version`.
    pub wanted: String,
    /// The stack's labels (for the canary selector).
    pub labels: BTreeMap<String, String>,
    /// The revision recorded on it (the annotation), if any.
    pub recorded: Option<String>,
    /// The revision its last reconcile ran (expanded without error).
    pub running: Option<String>,
    /// Ready=True at its current generation.
    pub ready: bool,
    /// Stalled=True: the reason and message.
    pub stalled: Option<String>,
    /// `spec.paused`: the stack takes no part in rollouts (nothing of it is written).
    pub paused: bool,
    /// The resourceVersion this report describes: a move is written only over it, so a stack
    /// that changed since (paused, moved by someone else) is looked at again first.
    pub resource_version: Option<String>,
}

/// One stack to move: `namespace/name`, the revision, the resourceVersion it was seen at.
pub type Move = (String, String, Option<String>);

/// What the rollout does now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Stacks (`namespace/name`) to move, the revision each moves to, and the
    /// resourceVersion the move is written over.
    pub moves: Vec<Move>,
    /// The rollout's status (`None`: no target, nothing to roll).
    pub status: Option<RolloutStatus>,
    /// Seconds until a timer (soak, wave deadline) needs another look.
    pub wake_after: Option<i64>,
}

/// Plans the rollout to `target` of the instances `members`, given the rollout settings
/// `spec`, the previous status `previous` and the time `now`.
pub fn plan(
    target: &Version,
    spec: &RolloutSpec,
    members: &[Member],
    previous: Option<&RolloutStatus>,
    now: Timestamp,
) -> Plan {
    let target_text = target.to_string();
    let same = previous.filter(|p| p.version == target_text);
    let mut status = RolloutStatus {
        version: target_text.clone(),
        phase: phase::PROGRESSING.into(),
        wave: same.map_or(0, |p| p.wave),
        failed: Vec::new(),
        wave_started: same.and_then(|p| p.wave_started.clone()),
        soak_started: same.and_then(|p| p.soak_started.clone()),
    };
    let mut plan = Plan::default();

    let mut tracking: Vec<&Member> = members
        .iter()
        .filter(|m| !m.paused && matches!(Wanted::parse(&m.wanted), Ok(Wanted::Range(ref r)) if r.matches(target)))
        .collect();
    tracking.sort_by(|a, b| a.key.cmp(&b.key));
    let recorded = |m: &Member| m.recorded.as_deref().and_then(|v| Version::parse(v).ok());

    if spec.paused {
        status.phase = phase::PAUSED.into();
        plan.status = Some(status);
        return plan;
    }

    // Rollback: above the target, back to it at once.
    for member in &tracking {
        if recorded(member).is_some_and(|v| v > *target) {
            plan.moves.push((member.key.clone(), target_text.clone(), member.resource_version.clone()));
        }
    }

    // A rollout that completed or halted stays so until its target changes: waves are
    // recomputed from the fleet at each look, so a halt that lifted by itself (the failing
    // stacks paused or deleted) would move a wave nobody checked, and failures after the
    // rollout completed are the stacks' own (each is Stalled and says why).
    if let Some(previous) = same.filter(|p| p.phase == phase::COMPLETE) {
        plan.status = Some(previous.clone());
        return plan;
    }
    let stays_halted = same.is_some_and(|p| p.phase == phase::HALTED);

    // A stack Stalled on an older revision (bad parameters, a conflict) needs a person, not a
    // move up: moving it would only count its old failure against the rollout. (A rollback,
    // above, still returns any stack.)
    let upgradable: Vec<&Member> = tracking
        .iter()
        .copied()
        .filter(|m| m.stalled.is_none() || m.recorded.as_deref() == Some(target_text.as_str()))
        .collect();
    let waves = waves(&upgradable, spec);
    let on_target = |m: &Member| recorded(m).as_ref() == Some(target);
    let ready_on_target = |m: &Member| on_target(m) && m.running.as_deref() == Some(target_text.as_str()) && m.ready;

    let started = usize::try_from(status.wave).unwrap_or(0).min(waves.len());
    let deadline = spec.wave_deadline_seconds.map_or(DEFAULT_WAVE_DEADLINE, i64::from);
    let wave_age =
        status.wave_started.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).map(|t| (now - t).get_seconds());
    // Failures among the started waves: Stalled on the target, or (current wave) not Ready
    // on it by the deadline.
    let mut failed = Vec::new();
    let mut failing: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (index, wave) in waves.iter().take(started).enumerate() {
        let current = index + 1 == started;
        for member in wave {
            let stalled = member.stalled.as_ref().filter(|_| on_target(member));
            if let Some(why) = stalled {
                failed.push(format!("{}: {why}", member.key));
                failing.insert(&member.key);
            } else if current && !ready_on_target(member) && wave_age.is_some_and(|age| age >= deadline) {
                failed.push(format!("{}: not Ready on {target_text} within {deadline} s", member.key));
                failing.insert(&member.key);
            }
        }
    }
    let budget = spec.failure_budget.map_or(0, |b| b.max(0) as usize);
    // Stacks of started waves not on the target yet (the wave's moves, or a stack that
    // joined a started wave) move now, unless halted.
    let halted = stays_halted || failed.len() > budget;
    status.failed = failed.iter().take(MAX_NAMED).cloned().collect();
    if halted {
        status.phase = phase::HALTED.into();
        plan.status = Some(status);
        return plan;
    }
    for wave in waves.iter().take(started) {
        for member in wave.iter().filter(|m| recorded(m).is_none_or(|v| v < *target)) {
            plan.moves.push((member.key.clone(), target_text.clone(), member.resource_version.clone()));
        }
    }
    // Failures within the budget do not hold the next wave back.
    let done = waves
        .iter()
        .take(started)
        .all(|wave| wave.iter().all(|m| ready_on_target(m) || failing.contains(m.key.as_str())));
    if !done {
        if let Some(age) = wave_age {
            // Past the deadline nothing is timed any more: a stack's change wakes the rollout.
            plan.wake_after = Some(if age < deadline { deadline - age } else { 60 });
        }
        plan.status = Some(status);
        return plan;
    }
    if started >= waves.len() {
        status.phase = phase::COMPLETE.into();
        status.soak_started = None;
        plan.status = Some(status);
        return plan;
    }
    // Waves with nothing to move and already Ready pass at once: no wave, no soak.
    let mut next = started;
    while waves
        .get(next)
        .is_some_and(|wave| wave.iter().all(|m| ready_on_target(m) || failing.contains(m.key.as_str())))
    {
        next += 1;
    }
    if next >= waves.len() {
        status.wave = i32::try_from(waves.len()).unwrap_or(i32::MAX);
        status.phase = phase::COMPLETE.into();
        status.soak_started = None;
        plan.status = Some(status);
        return plan;
    }
    // The waves so far are Ready: soak, then start the next.
    let soak = spec.soak_seconds.map_or(0, i64::from);
    if started > 0 && soak > 0 {
        let soak_started = status.soak_started.get_or_insert_with(|| now.to_string()).clone();
        let soaked = soak_started.parse::<Timestamp>().ok().map_or(0, |t| (now - t).get_seconds());
        if soaked < soak {
            status.phase = phase::SOAKING.into();
            plan.wake_after = Some(soak - soaked);
            plan.status = Some(status);
            return plan;
        }
    }
    status.wave = i32::try_from(next + 1).unwrap_or(i32::MAX);
    status.wave_started = Some(now.to_string());
    status.soak_started = None;
    for member in waves.get(next).into_iter().flatten().filter(|m| recorded(m).is_none_or(|v| v < *target)) {
        plan.moves.push((member.key.clone(), target_text.clone(), member.resource_version.clone()));
    }
    plan.wake_after = Some(deadline);
    plan.status = Some(status);
    plan
}

/// The waves: the canary wave (stacks the selector picks, if any do), then batches of the
/// rest in key order.
fn waves<'a>(tracking: &[&'a Member], spec: &RolloutSpec) -> Vec<Vec<&'a Member>> {
    let (canary, rest): (Vec<&Member>, Vec<&Member>) = match &spec.canary {
        Some(selector) => tracking.iter().partition(|m| selects(selector, &m.labels)),
        None => (Vec::new(), tracking.to_vec()),
    };
    let batch = batch_size(spec.batch.as_ref(), tracking.len());
    let mut waves: Vec<Vec<&Member>> = Vec::new();
    if !canary.is_empty() {
        waves.push(canary);
    }
    waves.extend(rest.chunks(batch).map(<[&Member]>::to_vec));
    waves
}

/// Stacks per batch: a number, or a percentage of `total` rounded up; at least 1.
pub fn batch_size(batch: Option<&IntOrString>, total: usize) -> usize {
    let size = match batch {
        Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(1),
        Some(IntOrString::String(text)) => percent(text, total),
        None => percent(DEFAULT_BATCH, total),
    };
    size.max(1)
}

fn percent(text: &str, total: usize) -> usize {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<usize>() {
        Ok(p) if text.trim().ends_with('%') => (total.saturating_mul(p.min(100))).div_ceil(100),
        Ok(n) => n,
        Err(_) => total.div_ceil(4),
    }
}

/// Whether `labels` match `selector` (matchLabels and matchExpressions, as the API server
/// evaluates label selectors; an operator it does not know matches nothing).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_match && expressions_match
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: usize, on: &str, ready: bool) -> Member {
        Member {
            key: format!("city/s{i:02}"),
            wanted: "*".into(),
            labels: if i < 3 { [("wave".to_owned(), "canary".to_owned())].into() } else { BTreeMap::new() },
            recorded: Some(on.into()),
            running: Some(on.into()),
            ready,
            stalled: None,
            paused: false,
            resource_version: None,
        }
    }

    fn spec() -> RolloutSpec {
        serde_json::from_value(serde_json::json!({
            "canary": {"matchLabels": {"wave": "canary"}}, "batch": 10, "soakSeconds": 60, "waveDeadlineSeconds": 300
        }))
        .unwrap_or_default()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap_or_default()
    }

    fn v2() -> Version {
        Version::new(2, 0, 0)
    }

    /// Applies a plan's moves, as the stacks would after reconciling (not Ready yet).
    fn moved(members: &mut [Member], plan: &Plan) {
        for (key, version, _) in &plan.moves {
            if let Some(m) = members.iter_mut().find(|m| &m.key == key) {
                m.recorded = Some(version.clone());
                m.running = Some(version.clone());
                m.ready = false;
            }
        }
    }

    fn keys(plan: &Plan) -> Vec<String> {
        plan.moves.iter().map(|(k, _, _)| k.clone()).collect()
    }

    #[test]
    fn waves_start_one_after_another_once_ready_and_soaked() {
        let mut members: Vec<Member> = (0..30).map(|i| member(i, "1.0.0", true)).collect();
        let first = plan(&v2(), &spec(), &members, None, at(0));
        assert_eq!(keys(&first), ["city/s00", "city/s01", "city/s02"]);
        assert_eq!(first.status.as_ref().map(|s| (s.wave, s.phase.as_str())), Some((1, phase::PROGRESSING)));
        moved(&mut members, &first);
        // Canaries rolling: nothing else moves.
        let waiting = plan(&v2(), &spec(), &members, first.status.as_ref(), at(10));
        assert!(waiting.moves.is_empty());
        members.iter_mut().take(3).for_each(|m| m.ready = true);
        // Ready: soak 60 s first.
        let soaking = plan(&v2(), &spec(), &members, waiting.status.as_ref(), at(20));
        assert!(soaking.moves.is_empty());
        assert_eq!(soaking.status.as_ref().map(|s| s.phase.as_str()), Some(phase::SOAKING));
        assert_eq!(soaking.wake_after, Some(60));
        let second = plan(&v2(), &spec(), &members, soaking.status.as_ref(), at(80));
        assert_eq!(keys(&second), (3..13).map(|i| format!("city/s{i:02}")).collect::<Vec<_>>());
        assert_eq!(second.status.as_ref().map(|s| s.wave), Some(2));
        moved(&mut members, &second);
        members.iter_mut().for_each(|m| m.ready = true);
        let mut status = second.status;
        for (t, wave) in [(200, 3), (300, 4)] {
            let soaked = plan(&v2(), &spec(), &members, status.as_ref(), at(t));
            let next = plan(&v2(), &spec(), &members, soaked.status.as_ref(), at(t + 60));
            assert_eq!(next.status.as_ref().map(|s| s.wave), Some(wave));
            moved(&mut members, &next);
            members.iter_mut().for_each(|m| m.ready = true);
            status = next.status;
        }
        let soaked = plan(&v2(), &spec(), &members, status.as_ref(), at(500));
        let done = plan(&v2(), &spec(), &members, soaked.status.as_ref(), at(600));
        assert_eq!(done.status.as_ref().map(|s| s.phase.as_str()), Some(phase::COMPLETE));
        assert!(members.iter().all(|m| m.recorded.as_deref() == Some("2.0.0")));
    }

    #[test]
    fn a_failing_canary_halts_and_a_rollback_returns_it() {
        let mut members: Vec<Member> = (0..30).map(|i| member(i, "2.0.0", true)).collect();
        let v3 = Version::new(3, 0, 0);
        let first = plan(&v3, &spec(), &members, None, at(0));
        moved(&mut members, &first);
        members[0].stalled = Some("MissingReference: Secret x not found".into());
        let halted = plan(&v3, &spec(), &members, first.status.as_ref(), at(10));
        let status = halted.status.clone().unwrap_or_default();
        assert_eq!(status.phase, phase::HALTED);
        assert_eq!(status.failed, ["city/s00: MissingReference: Secret x not found"]);
        // The deadline passes for the other canaries too; still nothing else moves.
        let later = plan(&v3, &spec(), &members, halted.status.as_ref(), at(400));
        assert!(later.moves.is_empty());
        assert_eq!(later.status.as_ref().map(|s| s.failed.len()), Some(3));
        // The failing canaries paused (or deleted) to look into them: still halted, nothing moves.
        let mut looked_into = members.clone();
        looked_into.iter_mut().take(3).for_each(|m| m.paused = true);
        let still = plan(&v3, &spec(), &looked_into, later.status.as_ref(), at(500));
        assert!(still.moves.is_empty());
        assert_eq!(still.status.as_ref().map(|s| s.phase.as_str()), Some(phase::HALTED));
        // Rollback: pin 2.0.0; the canaries return at once, the others were never touched.
        let back = plan(&v2(), &spec(), &members, later.status.as_ref(), at(410));
        assert_eq!(keys(&back), ["city/s00", "city/s01", "city/s02"]);
        assert!(back.moves.iter().all(|(_, v, _)| v == "2.0.0"));
    }

    #[test]
    fn pinned_stacks_and_paused_rollouts_do_not_move() {
        let mut members: Vec<Member> = (0..4).map(|i| member(i, "1.0.0", true)).collect();
        members[0].wanted = "1.0.0".into();
        members[1].wanted = "^1".into();
        members[3].paused = true;
        members[2].stalled = Some("InvalidParameters".into());
        let stalled_elsewhere = plan(&v2(), &RolloutSpec::default(), &members, None, at(0));
        assert!(stalled_elsewhere.moves.is_empty());
        members[2].stalled = None;
        let out = plan(&v2(), &RolloutSpec::default(), &members, None, at(0));
        assert_eq!(keys(&out), ["city/s02"]);
        let paused = RolloutSpec { paused: true, ..Default::default() };
        assert!(plan(&v2(), &paused, &members, None, at(0)).moves.is_empty());
    }

    #[test]
    fn a_fleet_already_on_the_target_completes_at_once() {
        let members: Vec<Member> = (0..30).map(|i| member(i, "2.0.0", true)).collect();
        let out = plan(&v2(), &spec(), &members, None, at(0));
        assert!(out.moves.is_empty());
        assert_eq!(out.status.map(|s| (s.phase, s.wave)), Some((phase::COMPLETE.to_owned(), 4)));
    }

    #[test]
    fn failures_within_the_budget_let_the_next_wave_start() {
        let mut members: Vec<Member> = (0..30).map(|i| member(i, "1.0.0", true)).collect();
        let budget = RolloutSpec { failure_budget: Some(1), soak_seconds: None, ..spec() };
        let first = plan(&v2(), &budget, &members, None, at(0));
        moved(&mut members, &first);
        members.iter_mut().take(3).for_each(|m| m.ready = true);
        members[0].ready = false;
        members[0].stalled = Some("KubeRejected".into());
        let next = plan(&v2(), &budget, &members, first.status.as_ref(), at(10));
        assert_eq!(next.moves.len(), 10);
        assert_eq!(next.status.as_ref().map(|s| (s.wave, s.failed.len())), Some((2, 1)));
    }

    #[test]
    fn a_completed_rollout_stays_complete() {
        let mut members: Vec<Member> = (0..4).map(|i| member(i, "2.0.0", true)).collect();
        let done = plan(&v2(), &spec(), &members, None, at(0));
        assert_eq!(done.status.as_ref().map(|s| s.phase.as_str()), Some(phase::COMPLETE));
        members[0].stalled = Some("Conflict".into());
        members[0].ready = false;
        let later = plan(&v2(), &spec(), &members, done.status.as_ref(), at(5000));
        assert_eq!(later.status.as_ref().map(|s| s.phase.as_str()), Some(phase::COMPLETE));
        assert!(later.moves.is_empty());
    }

    #[test]
    fn batch_sizes() {
        assert_eq!(batch_size(None, 30), 8);
        assert_eq!(batch_size(Some(&IntOrString::String("10%".into())), 30), 3);
        assert_eq!(batch_size(Some(&IntOrString::String("0%".into())), 30), 1);
        assert_eq!(batch_size(Some(&IntOrString::Int(-5)), 30), 1);
        assert_eq!(batch_size(Some(&IntOrString::String("x".into())), 30), 8);
    }
}
