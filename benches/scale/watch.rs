//! Readiness as the user sees it, timed from watch events: a stack's Ready condition at its
//! current generation, a Deployment's available replicas, an AzureResource's Ready condition.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use citystack::api::{AzureResource, SolutionStack};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

/// First time each key was seen ready. Keys are `<namespace>/<name>`.
#[derive(Clone, Default)]
pub struct Seen {
    ready: Arc<Mutex<HashMap<String, Instant>>>,
    watch: Option<tokio::task::AbortHandle>,
}

impl Seen {
    /// Stops the watch (what it saw stays): a phase's watches must not load the next one.
    pub fn stop(&self) {
        if let Some(watch) = &self.watch {
            watch.abort();
        }
    }

    fn mark(&self, key: String) {
        if let Ok(mut ready) = self.ready.lock() {
            ready.entry(key).or_insert_with(Instant::now);
        }
    }

    pub fn get(&self, key: &str) -> Option<Instant> {
        self.ready.lock().ok().and_then(|r| r.get(key).copied())
    }

    /// The latest first-seen time among keys under `prefix`.
    pub fn last(&self, prefix: &str) -> Option<Instant> {
        let ready = self.ready.lock().ok()?;
        ready.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, t)| *t).max()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.ready.lock().map(|r| r.keys().filter(|k| k.starts_with(prefix)).count()).unwrap_or(0)
    }

    /// Waits until `count(prefix)` reaches `n`, printing progress; `false` after `deadline`.
    pub async fn wait(&self, prefix: &str, n: usize, deadline: Duration) -> bool {
        let start = Instant::now();
        let mut last = Instant::now();
        loop {
            let count = self.count(prefix);
            if count >= n {
                return true;
            }
            if start.elapsed() > deadline {
                eprintln!("bench: only {count}/{n} ready under {prefix} after {deadline:?}");
                return false;
            }
            if last.elapsed() > Duration::from_secs(10) {
                eprintln!("bench: {count}/{n} ready under {prefix} ({:.0} s)", start.elapsed().as_secs_f64());
                last = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn key<K: kube::Resource>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// Marks each object `done` says is ready, from a watch of all namespaces.
fn watch<K>(client: &Client, config: watcher::Config, done: fn(&K) -> bool) -> Seen
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut seen = Seen::default();
    let marks = seen.clone();
    let api: Api<K> = Api::all(client.clone());
    let task = tokio::spawn(watcher(api, config).default_backoff().applied_objects().for_each(move |object| {
        if let Ok(object) = object.as_ref()
            && done(object)
        {
            marks.mark(key(object));
        }
        futures::future::ready(())
    }));
    seen.watch = Some(task.abort_handle());
    seen
}

/// Ready=True in a status that describes the current generation.
fn ready_at(
    generation: Option<i64>,
    observed: Option<i64>,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    observed == generation && conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Marks SolutionStacks Ready=True at their current generation.
pub fn stacks(client: &Client) -> Seen {
    watch(client, watcher::Config::default(), |s: &SolutionStack| {
        let status = s.status.as_ref();
        ready_at(
            s.metadata.generation,
            status.and_then(|s| s.observed_generation),
            status.map_or(&[], |s| &s.conditions),
        )
    })
}

/// Marks Deployments whose rollout is complete (all replicas updated and available at the
/// current generation), selected by `labels`.
pub fn deployments(client: &Client, labels: &str) -> Seen {
    watch(client, watcher::Config::default().labels(labels), |d: &Deployment| {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let Some(status) = d.status.as_ref() else { return false };
        status.observed_generation == d.metadata.generation
            && status.available_replicas.unwrap_or(0) >= want
            && status.updated_replicas.unwrap_or(0) >= want
    })
}

/// Marks every Deployment when first seen: when its creation reached the watch cache.
pub fn deployments_created(client: &Client) -> Seen {
    watch(client, watcher::Config::default(), |_: &Deployment| true)
}

/// Marks AzureResources Ready=True at their current generation.
pub fn azure(client: &Client) -> Seen {
    watch(client, watcher::Config::default(), |r: &AzureResource| {
        let status = r.status.as_ref();
        ready_at(
            r.metadata.generation,
            status.and_then(|s| s.observed_generation),
            status.map_or(&[], |s| &s.conditions),
        )
    })
}
