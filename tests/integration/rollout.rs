//! A blueprint revision rolls out across 30 instances in waves (a canary wave of 3, then
//! batches of 10), each wave only after the one before is Ready on it; a revision that cannot
//! become Ready halts at the canaries, leaves the other 27 untouched, names the failing
//! stacks, and a rollback returns the canaries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use citystack::api::{SolutionBlueprint, SolutionStack};
use citystack::blueprint::VERSION_ANNOTATION;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::harness::{self, Operator, condition, wait_until};

const STACKS: usize = 30;
/// Long enough for 30 stacks to roll through four waves on a busy machine.
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(240);

fn revision(version: &str, missing_secret: bool) -> serde_json::Value {
    let mut template = json!({
        "components": [{
            "name": "app",
            "image": format!("registry.example/portal:{version}"),
            "env": [{"name": "CITY", "value": "${params.city}"}]
        }]
    });
    if missing_secret {
        // Binds a Secret nobody created: the stack waits for it, never Ready.
        template["bindings"] = json!([{"name": "vault", "secretRef": {"name": "never-created"}}]);
        template["components"][0]["uses"] = json!(["vault"]);
    }
    json!({
        "version": version,
        "parameters": {"city": {"type": "string", "required": true}},
        "template": template
    })
}

fn blueprint(name: &str, revisions: &[serde_json::Value], rollout: serde_json::Value) -> SolutionBlueprint {
    serde_json::from_value(json!({
        "apiVersion": "citystack.io/v1alpha1",
        "kind": "SolutionBlueprint",
        "metadata": {"name": name},
        "spec": {"solution": "smart-tourism", "revisions": revisions, "rollout": rollout}
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// What the test saw of one stack over time: when it was recorded on each revision, and when
/// it was first Ready on each.
#[derive(Default, Debug)]
struct Seen {
    recorded: BTreeMap<String, Instant>,
    ready: BTreeMap<String, Instant>,
}

fn on(stack: &SolutionStack) -> (Option<String>, Option<String>) {
    let recorded = stack.annotations().get(VERSION_ANNOTATION).cloned();
    let status = stack.status.as_ref();
    let current = status.and_then(|s| s.observed_generation) == stack.metadata.generation;
    let ready = current && condition(stack, "Ready").is_some_and(|c| c.status == "True");
    let running = status.and_then(|s| s.blueprint.as_ref()).map(|b| b.version.clone());
    (recorded.clone(), if ready && running == recorded { running } else { None })
}

#[tokio::test]
async fn revisions_roll_out_in_waves_halt_on_failure_and_roll_back() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "rollout", json!({})).await;
    let _operator = Operator::start_with(&ns, 300, &["--blueprint-rollouts"]).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let blueprints: Api<SolutionBlueprint> = Api::all(client.clone());
    let name = ns.clone();
    let rollout = json!({"canary": {"matchLabels": {"wave": "canary"}}, "batch": 10, "soakSeconds": 1, "waveDeadlineSeconds": 120});
    harness::apply(&blueprints, &blueprint(&name, &[revision("1.0.0", false)], rollout.clone())).await;

    // Record every change of every stack, from a watch.
    let seen: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::default();
    let recorder = tokio::spawn({
        let (seen, stacks) = (seen.clone(), stacks.clone());
        async move {
            let mut events = watcher(stacks, watcher::Config::default()).applied_objects().boxed();
            while let Some(Ok(stack)) = events.next().await {
                let (recorded, ready) = on(&stack);
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                let entry = seen.entry(stack.name_any()).or_default();
                if let Some(v) = recorded {
                    entry.recorded.entry(v).or_insert_with(Instant::now);
                }
                if let Some(v) = ready {
                    entry.ready.entry(v).or_insert_with(Instant::now);
                }
            }
        }
    });

    let names: Vec<String> = (0..STACKS).map(|i| format!("s{i:02}")).collect();
    for (i, stack) in names.iter().enumerate() {
        let labels = if i < 3 { json!({"wave": "canary"}) } else { json!({}) };
        let object: SolutionStack = serde_json::from_value(json!({
            "apiVersion": "citystack.io/v1alpha1", "kind": "SolutionStack",
            "metadata": {"name": stack, "labels": labels},
            "spec": {"blueprint": {"name": name, "version": "*", "parameters": {"city": "hoian"}}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        harness::apply(&stacks, &object).await;
    }
    let all_on = |version: &'static str| {
        let stacks = stacks.clone();
        async move {
            let list = stacks.list(&Default::default()).await.ok()?;
            let ready = list.items.iter().filter(|s| on(s).1.as_deref() == Some(version)).count();
            (ready == STACKS).then_some(())
        }
    };
    wait_until("all 30 Ready on 1.0.0", ROLLOUT_DEADLINE, || all_on("1.0.0")).await;

    // Publish 2.0.0: waves of 3 (canaries), 10, 10, 7.
    let published = Instant::now();
    let v1_v2 = [revision("1.0.0", false), revision("2.0.0", false)];
    harness::apply(&blueprints, &blueprint(&name, &v1_v2, rollout.clone())).await;
    wait_until("all 30 Ready on 2.0.0", ROLLOUT_DEADLINE, || all_on("2.0.0")).await;
    let done = wait_until("the rollout to 2.0.0 Complete", ROLLOUT_DEADLINE, || async {
        let bp = blueprints.get(&name).await.ok()?;
        let rollout = bp.status.as_ref()?.rollout.clone()?;
        (rollout.version == "2.0.0" && rollout.phase == "Complete").then_some(bp)
    })
    .await;
    let status = done.status.clone().unwrap_or_default();
    assert_eq!((status.instances, status.updated, status.ready), (30, 30, 30));
    assert_eq!(status.rollout.as_ref().map(|r| r.wave), Some(4));

    let waves: Vec<&[String]> = vec![&names[0..3], &names[3..13], &names[13..23], &names[23..30]];
    {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let at = |stack: &String, what: fn(&Seen) -> &BTreeMap<String, Instant>| {
            seen.get(stack)
                .and_then(|s| what(s).get("2.0.0").copied())
                .unwrap_or_else(|| panic!("{stack}: not seen on 2.0.0"))
        };
        println!("rollout timeline (seconds after 2.0.0 was published):");
        for (i, wave) in waves.iter().enumerate() {
            let moved: Vec<Instant> = wave.iter().map(|s| at(s, |s| &s.recorded)).collect();
            let ready: Vec<Instant> = wave.iter().map(|s| at(s, |s| &s.ready)).collect();
            let secs = |t: Option<&Instant>| t.map_or(0.0, |t| t.duration_since(published).as_secs_f64());
            println!(
                "  wave {}: {} stacks moved {:.1}..{:.1} s, all Ready by {:.1} s",
                i + 1,
                wave.len(),
                secs(moved.iter().min()),
                secs(moved.iter().max()),
                secs(ready.iter().max())
            );
            if i > 0 {
                // No stack of this wave moved before every stack of the wave before was Ready.
                let previous_ready = waves[i - 1].iter().map(|s| at(s, |s| &s.ready)).max();
                let first_move = moved.iter().min();
                assert!(first_move >= previous_ready.as_ref(), "wave {} moved before wave {} was Ready", i + 1, i);
            }
        }
    }

    // 3.0.0 binds a Secret that does not exist: the canaries stall it, nothing else moves.
    let halting = json!({"canary": {"matchLabels": {"wave": "canary"}}, "batch": 10, "waveDeadlineSeconds": 10});
    let v3 = [revision("1.0.0", false), revision("2.0.0", false), revision("3.0.0", true)];
    harness::apply(&blueprints, &blueprint(&name, &v3, halting.clone())).await;
    let halted = wait_until("the rollout to 3.0.0 Halted", ROLLOUT_DEADLINE, || async {
        let bp = blueprints.get(&name).await.ok()?;
        let rollout = bp.status.as_ref()?.rollout.clone()?;
        (rollout.version == "3.0.0" && rollout.phase == "Halted").then_some(rollout)
    })
    .await;
    let failed: Vec<&str> = halted.failed.iter().filter_map(|f| f.split(':').next()).collect();
    assert_eq!(failed, [format!("{ns}/s00"), format!("{ns}/s01"), format!("{ns}/s02")]);
    let bp = blueprints.get(&name).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(condition_of(&bp, "Stalled"), Some("True".to_owned()));
    let list = stacks.list(&Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    for stack in &list.items {
        let expected = if names[..3].contains(&stack.name_any()) { "3.0.0" } else { "2.0.0" };
        assert_eq!(
            stack.annotations().get(VERSION_ANNOTATION).map(String::as_str),
            Some(expected),
            "{}",
            stack.name_any()
        );
    }
    {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        for stack in &names[3..] {
            let versions: Vec<&String> = seen.get(stack).map(|s| s.recorded.keys().collect()).unwrap_or_default();
            assert!(!versions.iter().any(|v| *v == "3.0.0"), "{stack} moved outside its wave: {versions:?}");
        }
    }

    // Rollback: pin 2.0.0; the canaries return, and the fleet is whole again.
    let mut pinned = halting;
    pinned["version"] = json!("2.0.0");
    harness::apply(&blueprints, &blueprint(&name, &v3, pinned)).await;
    wait_until("all 30 Ready on 2.0.0 again", ROLLOUT_DEADLINE, || async {
        let list = stacks.list(&Default::default()).await.ok()?;
        let back = list
            .items
            .iter()
            .filter(|s| s.annotations().get(VERSION_ANNOTATION).map(String::as_str) == Some("2.0.0"))
            .count();
        (back == STACKS).then_some(())
    })
    .await;
    wait_until("the canaries Ready on 2.0.0", ROLLOUT_DEADLINE, || all_on("2.0.0")).await;

    recorder.abort();
    let _ = blueprints.delete(&name, &Default::default()).await;
    harness::delete_namespace(&client, &ns).await;
}

fn condition_of(blueprint: &SolutionBlueprint, type_: &str) -> Option<String> {
    let status = blueprint.status.as_ref()?;
    status.conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}
