//! Three replicas with `--shard`: every stack is reconciled by exactly one replica (Events
//! carry the writer's identity as `reportingInstance`); a replica killed without a word loses
//! its range to the others within the lease duration, no stack is lost and no stack is
//! written by two replicas. Replica 2 filters on its own side (`--shard-filter client`, what
//! runs on clusters without ShardedListAndWatch); the others let the API server filter.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use citystack::api::SolutionStack;
use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::harness::{self, Operator, wait_until};

const STACKS: usize = 300;

/// `citystack run` flags of a sharded replica in ring `ring` (6 s Leases, so a dead one
/// drops out quickly).
fn shard_flags(ring: &str, lease_ns: &str) -> Vec<String> {
    ["--shard", "--lease-name", ring, "--lease-namespace", lease_ns, "--lease-duration", "6", "--lease-grace", "2"]
        .map(String::from)
        .to_vec()
}

async fn replica(ns: &str, ring: &str, index: usize) -> Operator {
    let mut flags = shard_flags(ring, &harness::lease_namespace(ns));
    let filter = if index == 2 { "client" } else { "auto" };
    flags.extend(["--shard-filter".to_owned(), filter.to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Operator::start_with_env(ns, 300, &flags, &[("POD_NAME", &format!("replica-{index}"))]).await
}

/// Applies stack `s<i>` with `image` (one component without pods, so hundreds fit the nodes).
async fn apply_all(api: &Api<SolutionStack>, image: &str) {
    futures::stream::iter(0..STACKS)
        .for_each_concurrent(16, |i| async move {
            let stack: SolutionStack = serde_json::from_value(json!({
                "apiVersion": "citystack.io/v1alpha1", "kind": "SolutionStack",
                "metadata": {"name": format!("s{i}")},
                "spec": {"components": [{"name": "web", "image": image, "replicas": 0}]}
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            api.patch(&stack.name_any(), &PatchParams::apply("citystack-tests").force(), &Patch::Apply(&stack))
                .await
                .unwrap_or_else(|e| panic!("apply s{i}: {e}"));
        })
        .await;
}

/// Waits until every stack is Ready at its current generation.
async fn all_ready(api: &Api<SolutionStack>, what: &str) {
    wait_until(what, Duration::from_secs(240), || async {
        let stacks = api.list(&ListParams::default()).await.ok()?;
        let ready = stacks
            .items
            .iter()
            .filter(|s| {
                let status = s.status.as_ref();
                status.and_then(|s| s.observed_generation) == s.metadata.generation
                    && status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        (ready == STACKS).then_some(())
    })
    .await;
}

/// For each stack, the replicas whose Events with `reason` name it.
async fn writers(client: &Client, ns: &str, reason: &str) -> BTreeMap<String, BTreeSet<String>> {
    // Events are sent in the background after the reconcile that wrote them: a stack can be
    // Ready before its Event exists, so wait (with the deadline) for one per stack.
    wait_until(&format!("a {reason} Event for each of {STACKS} stacks"), harness::DEADLINE, || async {
        let out = stack_events(client, ns, reason).await;
        (out.len() >= STACKS).then_some(out)
    })
    .await
}

/// Per stack, the reporting instances of its `reason` Events, as listed now.
async fn stack_events(client: &Client, ns: &str, reason: &str) -> BTreeMap<String, BTreeSet<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for event in events.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("{e}")).items {
        let regarding = event.regarding.as_ref();
        if event.reason.as_deref() != Some(reason) || regarding.and_then(|r| r.kind.as_deref()) != Some("SolutionStack")
        {
            continue;
        }
        let stack = regarding.and_then(|r| r.name.clone()).unwrap_or_default();
        out.entry(stack).or_default().insert(event.reporting_instance.clone().unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_stacks_and_a_dead_ones_range_moves() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "shard", json!({})).await;
    let ring = format!("ring-{ns}");
    let mut replicas = Vec::new();
    for index in 0..3 {
        replicas.push(replica(&ns, &ring, index).await);
    }
    for (index, operator) in replicas.iter().enumerate() {
        wait_until("the replica holds a range", harness::DEADLINE, || async {
            operator.log().contains("sharding: holding range").then_some(())
        })
        .await;
        // The local control plane runs with ShardedListAndWatch: the API server filters.
        let mode = if index == 2 { "client-side (--shard-filter client)" } else { "server-side (shardSelector)" };
        assert!(operator.log().contains(mode), "replica-{index} not {mode}:\n{}", operator.log());
    }
    let api: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    apply_all(&api, "registry.example/web:1").await;
    all_ready(&api, "300 stacks Ready across three replicas").await;

    // Exactly one replica created each stack's Deployment, and all three did some.
    let created = writers(&client, &ns, "Created").await;
    assert_eq!(created.len(), STACKS, "stacks with a Created Event");
    let mut per_replica: BTreeMap<String, usize> = BTreeMap::new();
    for (stack, instances) in &created {
        assert_eq!(instances.len(), 1, "{stack} written by {instances:?}");
        for instance in instances {
            *per_replica.entry(instance.clone()).or_default() += 1;
        }
    }
    assert_eq!(per_replica.keys().map(String::as_str).collect::<Vec<_>>(), ["replica-0", "replica-1", "replica-2"]);
    for operator in &replicas {
        let reconciles = operator.metric("citystack_reconciles_total", &[("controller", "solutionstack")]).await;
        assert!(reconciles > 0.0, "a replica reconciled nothing:\n{}", operator.log());
    }

    // replica-1 dies without releasing anything; every stack then changes. The survivors take
    // its range once its Lease expires (6 s) and bring every stack to the new image.
    replicas[1].kill();
    apply_all(&api, "registry.example/web:2").await;
    all_ready(&api, "300 stacks Ready at the new image on the two survivors").await;
    let updated = writers(&client, &ns, "Updated").await;
    assert_eq!(updated.len(), STACKS, "stacks with an Updated Event");
    for (stack, instances) in &updated {
        assert_eq!(instances.len(), 1, "{stack} updated by {instances:?}");
        assert!(!instances.contains("replica-1"), "{stack} updated by the dead replica");
    }
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), &ns);
    let images: BTreeSet<String> = deployments
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items
        .iter()
        .filter_map(|d| d.spec.as_ref()?.template.spec.as_ref()?.containers.first()?.image.clone())
        .collect();
    assert_eq!(images.into_iter().collect::<Vec<_>>(), ["registry.example/web:2"]);
    harness::delete_namespace(&client, &ns).await;
}

/// ARM throttles the principal, not the replica: a 429 one replica receives holds back the
/// other's requests to that subscription too, for the whole Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_one_replica_receives_pauses_the_other() {
    use crate::azure::{Sim, azr, credential_secret, requests_after_the_first_429, timed_requests, wait_azr_ready};
    use citystack::api::AzureResource;

    let client = harness::client().await;
    let ns = harness::namespace(&client, "shardarm", json!({})).await;
    credential_secret(&client, &ns).await;
    let sim = Sim::start(Duration::from_millis(300)).await;
    let ring = format!("ring-{ns}");
    let lease_ns = harness::lease_namespace(&ns);
    let mut flags = shard_flags(&ring, &lease_ns);
    flags.extend(sim.flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut replicas = Vec::new();
    for name in ["replica-a", "replica-b"] {
        replicas.push(Operator::start_with_env(&ns, 300, &flags, &[("POD_NAME", name)]).await);
    }
    for operator in &replicas {
        wait_until("both replicas hold a range", harness::DEADLINE, || async {
            operator
                .log()
                .matches("sharding: holding range")
                .last()
                .and(operator.log().contains("members=2").then_some(()))
        })
        .await;
    }
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-shared", "location": "eastus"}))).await;
    wait_azr_ready(&api, "rg").await;

    // The first read of a cache is answered 429 with Retry-After: 6. Once the replica that got
    // it has shared the pause, twelve more caches arrive: both replicas have some of them (each
    // has half the hash space), and neither may call ARM before the pause ends.
    sim.admin(
        reqwest::Method::POST,
        "/_admin/faults",
        Some(json!({"method": "GET", "pathContains": "/redis/", "status": 429, "retryAfter": 6, "count": 1})),
    )
    .await;
    let cache = |i: usize| {
        let spec = json!({"kind": "RedisCache", "name": format!("shared-cache-{i}"), "resourceGroup": "rg-shared", "location": "eastus"});
        azr(&format!("c{i}"), spec)
    };
    harness::apply(&api, &cache(0)).await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &lease_ns);
    wait_until("the pause shared through the ring's Lease", harness::DEADLINE, || async {
        let lease = leases.get_opt(&citystack::azure::pauses::lease_name(&ring)).await.ok()??;
        lease.annotations().keys().any(|k| k.starts_with(citystack::azure::pauses::PREFIX)).then_some(())
    })
    .await;
    for i in 1..16 {
        harness::apply(&api, &cache(i)).await;
    }
    for i in 0..16 {
        wait_azr_ready(&api, &format!("c{i}")).await;
    }
    // Events are sent in the background: wait for both replicas' to be listed.
    let writers = wait_until("Events from both replicas", harness::DEADLINE, || async {
        let writers = writers_of_azure(&client, &ns).await;
        (writers.len() >= 2).then_some(writers)
    })
    .await;
    assert_eq!(writers.len(), 2, "both replicas provisioned caches: {writers:?}");
    // Sharing the pause takes a Lease write and a watch event: allow a second for it.
    let early = requests_after_the_first_429(&timed_requests(&sim).await, 1000, 6000);
    assert!(early.is_empty(), "requests to the throttled subscription and principal during Retry-After: {early:?}");
    harness::delete_namespace(&client, &ns).await;
}

/// The replicas that published Events about AzureResources.
async fn writers_of_azure(client: &Client, ns: &str) -> BTreeSet<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("{e}"));
    list.items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("AzureResource"))
        .filter_map(|e| e.reporting_instance.clone())
        .collect()
}
