//! Reconciles take turns, in the order they were triggered, from two pools: one for first
//! reconciles, one for the reconciles that follow.
//!
//! kube's controller runner, given a concurrency limit, parks every request that falls due
//! while its slots are busy in a hash set, and starts them in the set's iteration order. Under
//! sustained load (a fleet rolling out: thousands of child events a minute) an object whose
//! hash sorts late waits for as long as the load lasts; a 10,000-stack bench run had stacks
//! created in its first minute still unreconciled 20 minutes later while later ones were
//! Ready. So the runner runs without a limit, and each reconcile first takes a turn here. A
//! reconcile that waited reads its object again from the cache, so it never acts on the
//! version it was triggered with.
//!
//! [`Class::Fresh`] reconciles (a new or changed object: they create and change children) and
//! [`Class::Progress`] ones (already reconciled at its generation: following its children, a
//! resync) each have `concurrency` turns, first come, first served, and never wait for each
//! other. One shared queue ran every first reconcile of a 10,000-stack burst before any
//! stack's second, so none became Ready for the better part of an hour. Sharing the turns
//! with progress first did not do either: a first reconcile can take seconds (a Service create
//! waited 2.6 s on a 10,000-stack API server, whose ClusterIP allocator serves one Service at
//! a time) where following children mostly reads caches, so first reconciles held every turn
//! and stacks whose Deployments were available waited to be marked Ready (11,943 of 12,870
//! Deployments available, 1,404 of 10,000 stacks Ready); giving them only half the turns
//! made a 1,000-stack fleet's children come 52 % later than a bare client's at the same
//! concurrency.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::oneshot;

/// Which pool a reconcile takes its turn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Already reconciled at its current generation (status.observedGeneration equals
    /// metadata.generation, the Kubernetes API convention): following its children.
    Progress,
    /// New, or its spec changed since it was last reconciled.
    Fresh,
}

impl Class {
    /// The class of an object with `generation` whose status observed `observed`.
    pub fn of(generation: Option<i64>, observed: Option<i64>) -> Self {
        if observed.is_some() && observed == generation { Self::Progress } else { Self::Fresh }
    }
}

/// Turns for the reconciles of one controller.
pub struct Turns(Arc<Inner>);

struct Inner(Mutex<Queue>);

struct Queue {
    closed: bool,
    progress: Pool,
    fresh: Pool,
}

/// One class's turns: how many are free, and who waits for one, in order.
struct Pool {
    free: usize,
    waiting: VecDeque<oneshot::Sender<Turn>>,
}

impl Queue {
    fn pool(&mut self, class: Class) -> &mut Pool {
        match class {
            Class::Progress => &mut self.progress,
            Class::Fresh => &mut self.fresh,
        }
    }
}

/// Where a reconcile asking for a turn stands.
enum Place {
    /// It has one.
    Now(Turn),
    /// It waits in its pool's queue for this.
    Waiting(oneshot::Receiver<Turn>),
    /// No more turns are given.
    Closed,
}

impl Inner {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A reconcile's turn, held until it is dropped; dropping it gives the turn to the next
/// waiter of its class.
pub struct Turn {
    inner: Option<Arc<Inner>>,
    class: Class,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        loop {
            let Some(next) = ({
                let mut queue = inner.queue();
                let pool = queue.pool(self.class);
                let next = pool.waiting.pop_front();
                if next.is_none() {
                    pool.free += 1;
                }
                next
            }) else {
                return;
            };
            // A waiter that went away (its reconcile dropped) hands it on to the next.
            match next.send(Turn { inner: Some(inner.clone()), class: self.class }) {
                Ok(()) => return,
                Err(mut unclaimed) => unclaimed.inner = None,
            }
        }
    }
}

impl Turns {
    /// At most `concurrency` reconciles of each class at once (0: no limit).
    pub fn new(concurrency: u16) -> Self {
        let free = if concurrency == 0 { usize::MAX } else { usize::from(concurrency) };
        let pool = || Pool { free, waiting: VecDeque::new() };
        Self(Arc::new(Inner(Mutex::new(Queue { closed: false, progress: pool(), fresh: pool() }))))
    }

    /// Waits for a turn from the pool `class` picks for the cached version of `object`, then
    /// returns the turn with the cached version as it is now; `None` when the object left the
    /// cache meanwhile (deleted: nothing to reconcile) or the turns were closed (shutting
    /// down: a waiting reconcile is dropped, as kube drops requests it has not started).
    pub async fn take<K>(
        &self,
        store: &Store<K>,
        object: &K,
        class: impl FnOnce(&Arc<K>) -> Class,
    ) -> Option<(Turn, Arc<K>)>
    where
        K: Resource + Clone,
        K::DynamicType: Eq + std::hash::Hash + Clone + Default,
    {
        let key = ObjectRef::from_obj(object);
        // Classed outside the lock: for a stack it means reading a field of its cached text.
        let class = class(&store.get(&key)?);
        let turn = match self.place(class) {
            Place::Now(turn) => turn,
            Place::Waiting(receiver) => receiver.await.ok()?,
            Place::Closed => return None,
        };
        // Closed between the hand-over and now: the turn goes back unused.
        let closed = self.0.queue().closed;
        if closed {
            return None;
        }
        let latest = store.get(&key)?;
        Some((turn, latest))
    }

    /// A turn now if one of `class` is free and nobody of it waits; else a place in its queue.
    fn place(&self, class: Class) -> Place {
        let mut queue = self.0.queue();
        if queue.closed {
            return Place::Closed;
        }
        let pool = queue.pool(class);
        if pool.free > 0 && pool.waiting.is_empty() {
            pool.free -= 1;
            return Place::Now(Turn { inner: Some(self.0.clone()), class });
        }
        let (sender, receiver) = oneshot::channel();
        pool.waiting.push_back(sender);
        Place::Waiting(receiver)
    }

    /// Gives no more turns: reconciles waiting for one end at once; running ones finish.
    pub fn close(&self) {
        let mut queue = self.0.queue();
        queue.closed = true;
        queue.progress.waiting.clear();
        queue.fresh.waiting.clear();
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
            Some(turns) => match turns.take(&ctx.store, &object, |_| Class::Fresh).await {
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
        let running = turns.take(&store, &map(0), |_| Class::Fresh).await;
        assert!(running.is_some());
        let first = map(0);
        let mut waiting = Box::pin(turns.take(&store, &first, |_| Class::Fresh));
        assert!(futures::poll!(&mut waiting).is_pending(), "one turn at a time");
        turns.close();
        assert!(waiting.await.is_none(), "a waiting reconcile ends once turns are closed");
        assert!(turns.take(&store, &map(0), |_| Class::Fresh).await.is_none());
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

    type Waiter<'a> = futures::future::BoxFuture<'a, Option<(Turn, Arc<ConfigMap>)>>;

    /// Reconciles of `class` for the objects `names`, not yet polled, each with its name.
    fn waiters<'a>(
        turns: &'a Turns,
        store: &'a Store<ConfigMap>,
        class: Class,
        names: std::ops::Range<usize>,
    ) -> Vec<(usize, Waiter<'a>)> {
        names.map(|i| (i, Box::pin(async move { turns.take(store, &map(i), |_| class).await }) as _)).collect()
    }

    /// Polls `waiting` until one has its turn; returns its name and the turn.
    async fn granted(waiting: &mut Vec<(usize, Waiter<'_>)>) -> (usize, Turn) {
        for _ in 0..100 {
            for at in 0..waiting.len() {
                if let std::task::Poll::Ready(turn) = futures::poll!(&mut waiting[at].1) {
                    let (i, _) = waiting.remove(at);
                    let Some((turn, _)) = turn else { panic!("cm-{i} got no turn") };
                    return (i, turn);
                }
            }
            tokio::task::yield_now().await;
        }
        panic!("a turn was released and nobody got it")
    }

    #[tokio::test]
    async fn first_reconciles_and_the_ones_that_follow_never_wait_for_each_other() {
        let (store, mut writer) = reflector::store();
        for i in 0..20 {
            writer.apply_watcher_event(&watcher::Event::Apply(map(i)));
        }
        let turns = Turns::new(2);
        // Long first reconciles hold every fresh turn (a burst of new stacks)...
        let mut fresh = Vec::new();
        for i in 0..2 {
            fresh.push(turns.take(&store, &map(i), |_| Class::Fresh).await);
        }
        let mut waiting_fresh = waiters(&turns, &store, Class::Fresh, 2..5);
        for (_, waiter) in &mut waiting_fresh {
            assert!(futures::poll!(waiter).is_pending(), "two fresh turns at a time");
        }
        // ...and progress still runs, two at a time, first come, first served.
        let mut progress = Vec::new();
        for i in 10..12 {
            let object = map(i);
            let taken = tokio::time::timeout(Duration::from_secs(5), turns.take(&store, &object, |_| Class::Progress));
            let Ok(Some((turn, _))) = taken.await else { panic!("progress waited for fresh reconciles") };
            progress.push(turn);
        }
        let mut waiting_progress = waiters(&turns, &store, Class::Progress, 12..15);
        for (_, waiter) in &mut waiting_progress {
            assert!(futures::poll!(waiter).is_pending(), "two progress turns at a time");
        }
        // A turn given back goes to the next waiter of its own class, in order.
        progress.remove(0);
        assert_eq!(granted(&mut waiting_progress).await.0, 12);
        fresh.remove(0);
        assert_eq!(granted(&mut waiting_fresh).await.0, 2);
        progress.remove(0);
        assert_eq!(granted(&mut waiting_progress).await.0, 13);
    }

    #[tokio::test]
    async fn a_waiter_that_went_away_passes_its_turn_on() {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Apply(map(0)));
        writer.apply_watcher_event(&watcher::Event::Apply(map(1)));
        let (first, second) = (map(0), map(1));
        let turns = Turns::new(1);
        // Gone before the turn was handed over.
        let held = turns.take(&store, &first, |_| Class::Fresh).await;
        let mut gone = Box::pin(turns.take(&store, &first, |_| Class::Fresh));
        assert!(futures::poll!(&mut gone).is_pending());
        let mut next = Box::pin(turns.take(&store, &second, |_| Class::Fresh));
        assert!(futures::poll!(&mut next).is_pending());
        drop(gone);
        drop(held);
        let granted = tokio::time::timeout(Duration::from_secs(5), next).await;
        let Ok(Some((turn, object))) = granted else { panic!("the turn was lost") };
        assert_eq!(object.metadata.name.as_deref(), Some("cm-1"));
        // Gone after the turn was handed over, before it was received.
        let mut sent = Box::pin(turns.take(&store, &first, |_| Class::Fresh));
        assert!(futures::poll!(&mut sent).is_pending());
        drop(turn);
        drop(sent);
        let again = tokio::time::timeout(Duration::from_secs(5), turns.take(&store, &first, |_| Class::Fresh)).await;
        assert!(matches!(again, Ok(Some(_))), "the turn came back");
    }

    #[tokio::test]
    async fn a_turn_handed_over_as_turns_close_is_not_used() {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Apply(map(0)));
        let object = map(0);
        let turns = Turns::new(1);
        let held = turns.take(&store, &object, |_| Class::Fresh).await;
        let mut waiting = Box::pin(turns.take(&store, &object, |_| Class::Fresh));
        assert!(futures::poll!(&mut waiting).is_pending());
        drop(held);
        turns.close();
        assert!(waiting.await.is_none(), "a reconcile started after shutdown began");
    }

    #[test]
    fn an_object_reconciled_at_its_generation_is_progress() {
        assert_eq!(Class::of(Some(3), Some(3)), Class::Progress);
        assert_eq!(Class::of(Some(4), Some(3)), Class::Fresh);
        assert_eq!(Class::of(Some(1), None), Class::Fresh);
        assert_eq!(Class::of(None, None), Class::Fresh);
    }
}
