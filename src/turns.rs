//! Reconciles take turns: progress first, otherwise in the order they were triggered.
//!
//! kube's controller runner, given a concurrency limit, parks every request that falls due
//! while its slots are busy in a hash set, and starts them in the set's iteration order. Under
//! sustained load (a fleet rolling out: thousands of child events a minute) an object whose
//! hash sorts late waits for as long as the load lasts; a 10,000-stack bench run had stacks
//! created in its first minute still unreconciled 20 minutes later while later ones were
//! Ready. So the runner runs without a limit, and each reconcile first takes a turn here, one
//! of the configured number. A reconcile that waited reads its object again from the cache,
//! so it never acts on the version it was triggered with.
//!
//! Waiting reconciles form two queues, each first come, first served: [`Class::Progress`]
//! (the object was already reconciled at its generation: its children moved, a resync) and
//! [`Class::Fresh`] (a new or changed object). Under a burst of creations, plain first come,
//! first served ran every stack's first reconcile before any stack's second, so no stack of a
//! 10,000-stack burst became Ready for the better part of an hour. When both queues wait,
//! fresh reconciles hold at most half the turns ([`Queue::fresh_share`]) and progress gets
//! the rest. The split is by turns held, not turns given: a fresh reconcile creates children
//! and can take seconds (a Service create waited 2.6 s on a 10,000-stack API server, whose
//! ClusterIP allocator works one Service at a time), a progress one mostly reads caches; giving
//! fresh ones every fifth turn let them hold all four turns, so stacks whose Deployments were
//! all available waited for the reconcile that would mark them Ready (11,943 of 12,870
//! Deployments available, 1,404 of 10,000 stacks Ready). With a single turn, progress goes
//! first and, after [`PROGRESS_STREAK`] progress turns in a row while fresh ones wait, the
//! next goes to a fresh one, so neither can starve the other.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::oneshot;

/// With a single turn: turns given to progress in a row while fresh reconciles wait; the
/// next goes to a fresh one.
pub const PROGRESS_STREAK: u32 = 4;

/// Which queue a waiting reconcile joins.
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

#[derive(Default)]
struct Queue {
    free: usize,
    /// Turns held by fresh reconciles.
    fresh_running: usize,
    /// The most turns fresh reconciles may hold while progress waits: half the concurrency;
    /// 0 with a single turn (or none), where [`PROGRESS_STREAK`] shares it instead.
    fresh_share: usize,
    closed: bool,
    progress: VecDeque<oneshot::Sender<Turn>>,
    fresh: VecDeque<oneshot::Sender<Turn>>,
    /// With a single turn: turns given to progress in a row while fresh reconciles waited.
    streak: u32,
}

impl Queue {
    /// The next waiter to give a turn to, and its class.
    fn next(&mut self) -> Option<(oneshot::Sender<Turn>, Class)> {
        // Waiters that went away (their reconcile dropped) take no turn and count for nothing.
        for queue in [&mut self.progress, &mut self.fresh] {
            while queue.front().is_some_and(oneshot::Sender::is_closed) {
                queue.pop_front();
            }
        }
        let fresh = match (self.progress.is_empty(), self.fresh.is_empty()) {
            (_, true) => false,
            (true, false) => true,
            (false, false) if self.fresh_share > 0 => self.fresh_running < self.fresh_share,
            (false, false) => self.streak >= PROGRESS_STREAK,
        };
        if fresh {
            self.streak = 0;
            return self.fresh.pop_front().map(|waiter| (waiter, Class::Fresh));
        }
        self.streak = if self.fresh.is_empty() { 0 } else { self.streak + 1 };
        self.progress.pop_front().map(|waiter| (waiter, Class::Progress))
    }

    /// Counts a turn given to a reconcile of `class`.
    fn hold(&mut self, class: Class) {
        if class == Class::Fresh {
            self.fresh_running += 1;
        }
    }

    /// Counts a turn given back by a reconcile of `class`.
    fn release(&mut self, class: Class) {
        if class == Class::Fresh {
            self.fresh_running = self.fresh_running.saturating_sub(1);
        }
    }
}

/// Where a reconcile asking for a turn stands.
enum Place {
    /// It has one.
    Now(Turn),
    /// It waits in a queue for this.
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
/// waiter.
pub struct Turn {
    inner: Option<Arc<Inner>>,
    class: Class,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        let mut class = self.class;
        loop {
            let Some((next, next_class)) = ({
                let mut queue = inner.queue();
                queue.release(class);
                let next = queue.next();
                match next {
                    Some((_, next_class)) => queue.hold(next_class),
                    None => queue.free += 1,
                }
                next
            }) else {
                return;
            };
            // A waiter that went away (its reconcile dropped) hands it on to the next.
            match next.send(Turn { inner: Some(inner.clone()), class: next_class }) {
                Ok(()) => return,
                Err(mut unclaimed) => {
                    unclaimed.inner = None;
                    class = next_class;
                }
            }
        }
    }
}

impl Turns {
    /// At most `concurrency` reconciles at once (0: no limit).
    pub fn new(concurrency: u16) -> Self {
        let free = if concurrency == 0 { usize::MAX } else { usize::from(concurrency) };
        let fresh_share = usize::from(concurrency) / 2;
        Self(Arc::new(Inner(Mutex::new(Queue { free, fresh_share, ..Queue::default() }))))
    }

    /// Waits for a turn in the queue `class` picks for the cached version of `object`, then
    /// returns the turn with the cached version as it is now; `None` when the object left the
    /// cache meanwhile (deleted: nothing to reconcile) or the turns were closed (shutting
    /// down: a waiting reconcile is dropped, as kube drops requests it has not started).
    pub async fn take<K>(&self, store: &Store<K>, object: &K, class: impl FnOnce(&K) -> Class) -> Option<(Turn, Arc<K>)>
    where
        K: Resource + Clone,
        K::DynamicType: Eq + std::hash::Hash + Clone + Default,
    {
        let key = ObjectRef::from_obj(object);
        // Classed outside the lock (for a stack it means reading a field of its cached text),
        // and always: the share of turns fresh reconciles hold counts every one of them.
        let class = class(store.get(&key)?.as_ref());
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

    /// A turn now if one is free and nobody waits; else a place in `class`'s queue.
    fn place(&self, class: Class) -> Place {
        let mut queue = self.0.queue();
        if queue.closed {
            return Place::Closed;
        }
        if queue.free > 0 && queue.progress.is_empty() && queue.fresh.is_empty() {
            queue.free -= 1;
            queue.hold(class);
            return Place::Now(Turn { inner: Some(self.0.clone()), class });
        }
        let (sender, receiver) = oneshot::channel();
        match class {
            Class::Progress => queue.progress.push_back(sender),
            Class::Fresh => queue.fresh.push_back(sender),
        }
        Place::Waiting(receiver)
    }

    /// Gives no more turns: reconciles waiting for one end at once; running ones finish.
    pub fn close(&self) {
        let mut queue = self.0.queue();
        queue.closed = true;
        queue.progress.clear();
        queue.fresh.clear();
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
        let mut waiting = Box::pin(turns.take(&store, &first, |_| Class::Progress));
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

    #[tokio::test]
    async fn progress_goes_first_and_fresh_reconciles_still_get_turns() {
        let (store, mut writer) = reflector::store();
        for i in 0..20 {
            writer.apply_watcher_event(&watcher::Event::Apply(map(i)));
        }
        let turns = Turns::new(1);
        let held = turns.take(&store, &map(0), |_| Class::Fresh).await;
        // Fresh 0..5 queue first, then progress 5..20.
        let mut waiting = waiters(&turns, &store, Class::Fresh, 0..5);
        waiting.extend(waiters(&turns, &store, Class::Progress, 5..20));
        for (_, waiter) in &mut waiting {
            assert!(futures::poll!(waiter).is_pending());
        }
        drop(held);
        let mut order = Vec::new();
        while !waiting.is_empty() {
            let mut granted = None;
            for (at, (i, waiter)) in waiting.iter_mut().enumerate() {
                if let std::task::Poll::Ready(turn) = futures::poll!(waiter) {
                    assert!(turn.is_some());
                    granted = Some((at, *i, turn));
                    break;
                }
            }
            let Some((at, i, turn)) = granted else { panic!("a turn was released and nobody got it") };
            order.push(i);
            drop(waiting.remove(at));
            drop(turn);
        }
        let streak = PROGRESS_STREAK as usize;
        // Progress first, in order, with a fresh one after each streak; fresh ones in order.
        let mut expected = Vec::new();
        let (mut progress, mut fresh) = ((5..20).peekable(), (0..5).peekable());
        while progress.peek().is_some() || fresh.peek().is_some() {
            expected.extend(progress.by_ref().take(if fresh.peek().is_some() { streak } else { usize::MAX }));
            expected.extend(fresh.next());
        }
        assert_eq!(order, expected);
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
    async fn fresh_reconciles_hold_at_most_half_the_turns_while_progress_waits() {
        let (store, mut writer) = reflector::store();
        for i in 0..20 {
            writer.apply_watcher_event(&watcher::Event::Apply(map(i)));
        }
        let turns = Turns::new(4);
        // Four long fresh reconciles hold every turn (a burst of new stacks).
        let mut held = Vec::new();
        for i in 0..4 {
            held.push(turns.take(&store, &map(i), |_| Class::Fresh).await.map(|(turn, _)| turn));
        }
        let mut waiting = waiters(&turns, &store, Class::Fresh, 4..8);
        waiting.extend(waiters(&turns, &store, Class::Progress, 10..14));
        for (_, waiter) in &mut waiting {
            assert!(futures::poll!(waiter).is_pending());
        }
        // The first two turns they give back go to progress; then fresh ones keep two.
        held.remove(0);
        let (first, first_turn) = granted(&mut waiting).await;
        held.remove(0);
        let (second, _second_turn) = granted(&mut waiting).await;
        assert_eq!((first, second), (10, 11), "progress waited behind four fresh reconciles");
        // Two fresh held: a progress turn given back goes to progress again.
        drop(first_turn);
        let (third, third_turn) = granted(&mut waiting).await;
        assert_eq!(third, 12);
        // A fresh one given back: fresh ones hold one, so the next fresh one goes.
        held.remove(0);
        let (fourth, _fourth_turn) = granted(&mut waiting).await;
        assert_eq!(fourth, 4, "fresh reconciles get their half");
        drop(third_turn);
        let (fifth, _fifth_turn) = granted(&mut waiting).await;
        assert_eq!(fifth, 13);
    }

    #[tokio::test]
    async fn progress_does_not_keep_fresh_reconciles_from_their_half() {
        let (store, mut writer) = reflector::store();
        for i in 0..20 {
            writer.apply_watcher_event(&watcher::Event::Apply(map(i)));
        }
        let turns = Turns::new(4);
        let mut held = Vec::new();
        for i in 0..4 {
            held.push(turns.take(&store, &map(i), |_| Class::Progress).await.map(|(turn, _)| turn));
        }
        let mut waiting = waiters(&turns, &store, Class::Progress, 10..20);
        waiting.extend(waiters(&turns, &store, Class::Fresh, 4..8));
        for (_, waiter) in &mut waiting {
            assert!(futures::poll!(waiter).is_pending());
        }
        let mut order = Vec::new();
        let mut kept = Vec::new();
        for _ in 0..3 {
            held.remove(0);
            let (i, turn) = granted(&mut waiting).await;
            order.push(i);
            kept.push(turn);
        }
        assert_eq!(order, [4, 5, 10], "two fresh reconciles, then progress");
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
        let mut gone = Box::pin(turns.take(&store, &first, |_| Class::Progress));
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
