//! Reconciles take turns in the order they were triggered.
//!
//! kube's controller runner, given a concurrency limit, parks every request that falls due
//! while its slots are busy in a hash set, and starts them in the set's iteration order. Under
//! sustained load (a fleet rolling out: thousands of child events a minute) an object whose
//! hash sorts late waits for as long as the load lasts; a 10,000-stack bench run had stacks
//! created in its first minute still unreconciled 20 minutes later while later ones were
//! Ready. So the runner runs without a limit, and each reconcile first takes a turn here: a
//! fair semaphore (tokio's grants permits first come, first served) with the configured
//! number of permits. A reconcile that waited reads its object again from the cache, so it
//! never acts on the version it was triggered with.

use std::sync::Arc;

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Turns for the reconciles of one controller.
pub struct Turns(Semaphore);

/// A reconcile's turn, held until it is dropped.
pub struct Turn<'a>(#[allow(dead_code)] SemaphorePermit<'a>);

impl Turns {
    /// At most `concurrency` reconciles at once (0: no limit).
    pub fn new(concurrency: u16) -> Self {
        let permits = if concurrency == 0 { Semaphore::MAX_PERMITS } else { usize::from(concurrency) };
        Self(Semaphore::new(permits))
    }

    /// Waits for a turn, then returns it with the cached version of `object` as it is now;
    /// `None` when the object left the cache meanwhile (deleted: nothing to reconcile) or the
    /// turns were closed (shutting down: a waiting reconcile is dropped, as kube drops
    /// requests it has not started).
    pub async fn take<K>(&self, store: &Store<K>, object: &K) -> Option<(Turn<'_>, Arc<K>)>
    where
        K: Resource + Clone,
        K::DynamicType: Eq + std::hash::Hash + Clone + Default,
    {
        let permit = self.0.acquire().await.ok()?;
        let latest = store.get(&ObjectRef::from_obj(object))?;
        Some((Turn(permit), latest))
    }

    /// Gives no more turns: reconciles waiting for one end at once; running ones finish.
    pub fn close(&self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::controller::{self, Action, Controller};
    use kube::runtime::{reflector, watcher};

    use super::*;

    const OBJECTS: usize = 200;
    const ROUNDS: usize = 3;

    fn map(i: usize) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta { name: Some(format!("cm-{i}")), namespace: Some("ns".into()), ..Default::default() },
            ..Default::default()
        }
    }

    struct Ctx {
        turns: Option<Turns>,
        store: Store<ConfigMap>,
        /// Reconciles so far, per object.
        runs: Mutex<BTreeMap<String, usize>>,
        /// The most reconciles any other object had when each object was first reconciled.
        overtaken_by: Mutex<BTreeMap<String, usize>>,
        again: futures::channel::mpsc::UnboundedSender<ConfigMap>,
    }

    async fn reconcile(object: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, std::convert::Infallible> {
        let _turn = match &ctx.turns {
            Some(turns) => match turns.take(&ctx.store, &object).await {
                Some((turn, _)) => Some(turn),
                None => return Ok(Action::await_change()),
            },
            None => None,
        };
        let name = object.metadata.name.clone().unwrap_or_default();
        let runs = {
            let mut runs = ctx.runs.lock().unwrap_or_else(|e| e.into_inner());
            let most = runs.values().copied().max().unwrap_or(0);
            let count = runs.entry(name.clone()).or_default();
            if *count == 0 {
                ctx.overtaken_by.lock().unwrap_or_else(|e| e.into_inner()).insert(name, most);
            }
            *count += 1;
            *count
        };
        // Work that takes a while; meanwhile its children change and wake it again, as a
        // stack's Deployments do while they roll out.
        tokio::time::sleep(Duration::from_millis(1)).await;
        if runs < ROUNDS {
            let _ = ctx.again.unbounded_send(object.as_ref().clone());
        }
        Ok(Action::await_change())
    }

    /// The most reconciles another object had run before the last object was first reconciled.
    async fn worst_wait(turns: Option<Turns>, concurrency: u16) -> usize {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for i in 0..OBJECTS {
            writer.apply_watcher_event(&watcher::Event::InitApply(map(i)));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let (again, triggers) = futures::channel::mpsc::unbounded();
        for i in 0..OBJECTS {
            let _ = again.unbounded_send(map(i));
        }
        let ctx = Arc::new(Ctx {
            turns,
            store: store.clone(),
            runs: Mutex::default(),
            overtaken_by: Mutex::default(),
            again,
        });
        let done = ctx.clone();
        let run = Controller::for_stream(triggers.map(Ok::<_, watcher::Error>), store)
            .with_config(controller::Config::default().concurrency(concurrency))
            .run(reconcile, |_, _, _| Action::await_change(), ctx.clone())
            .take(OBJECTS * ROUNDS)
            .for_each(|_| async {});
        let _ = tokio::time::timeout(Duration::from_secs(20), run).await;
        let overtaken = done.overtaken_by.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(overtaken.len(), OBJECTS, "every object is reconciled");
        overtaken.into_values().max().unwrap_or(0)
    }

    #[tokio::test]
    async fn closing_ends_the_waiting_and_not_the_running() {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Apply(map(0)));
        let turns = Turns::new(1);
        let running = turns.take(&store, &map(0)).await;
        assert!(running.is_some());
        let first = map(0);
        let mut waiting = Box::pin(turns.take(&store, &first));
        assert!(futures::poll!(&mut waiting).is_pending(), "one turn at a time");
        turns.close();
        assert!(waiting.await.is_none(), "a waiting reconcile ends once turns are closed");
        assert!(turns.take(&store, &map(1)).await.is_none());
        drop(running);
    }

    #[tokio::test]
    async fn every_object_is_reconciled_before_any_runs_a_third_time() {
        // kube's own limit: objects that hash late wait while others run round after round.
        let kube_limited = worst_wait(None, 2).await;
        assert!(kube_limited >= ROUNDS - 1, "kube's runner alone was fair this time ({kube_limited})");
        // Turns: triggered first, run first.
        let fair = worst_wait(Some(Turns::new(2)), 0).await;
        assert!(fair < 2, "an object waited while another ran {fair} times");
    }
}
