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
}

impl Seen {
    fn mark(&self, key: String) {
        if let Ok(mut ready) = self.ready.lock() {
            ready.entry(key).or_insert_with(Instant::now);
        }
    }

    pub fn get(&self, key: &str) -> Option<Instant> {
        self.ready.lock().ok().and_then(|r| r.get(key).copied())
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

/// Marks SolutionStacks Ready=True at their current generation.
pub fn stacks(client: &Client) -> Seen {
    let seen = Seen::default();
    let marks = seen.clone();
    let api: Api<SolutionStack> = Api::all(client.clone());
    tokio::spawn(watcher(api, watcher::Config::default()).default_backoff().applied_objects().for_each(move |s| {
        if let Ok(stack) = s {
            let status = stack.status.as_ref();
            let current = status.and_then(|s| s.observed_generation) == stack.metadata.generation;
            let ready = status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if current && ready {
                marks.mark(key(&stack));
            }
        }
        futures::future::ready(())
    }));
    seen
}

/// Marks Deployments whose rollout is complete (all replicas updated and available at the
/// current generation), selected by `labels`.
pub fn deployments(client: &Client, labels: &str) -> Seen {
    let seen = Seen::default();
    let marks = seen.clone();
    let api: Api<Deployment> = Api::all(client.clone());
    let config = watcher::Config::default().labels(labels);
    tokio::spawn(watcher(api, config).default_backoff().applied_objects().for_each(move |d| {
        if let Ok(d) = d {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = d.status.clone().unwrap_or_default();
            let current = status.observed_generation == d.metadata.generation;
            if current && status.available_replicas.unwrap_or(0) >= want && status.updated_replicas.unwrap_or(0) >= want
            {
                marks.mark(key(&d));
            }
        }
        futures::future::ready(())
    }));
    seen
}

/// Marks AzureResources Ready=True at their current generation.
pub fn azure(client: &Client) -> Seen {
    let seen = Seen::default();
    let marks = seen.clone();
    let api: Api<AzureResource> = Api::all(client.clone());
    tokio::spawn(watcher(api, watcher::Config::default()).default_backoff().applied_objects().for_each(move |r| {
        if let Ok(r) = r {
            let status = r.status.as_ref();
            let current = status.and_then(|s| s.observed_generation) == r.metadata.generation;
            let ready = status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if current && ready {
                marks.mark(key(&r));
            }
        }
        futures::future::ready(())
    }));
    seen
}
