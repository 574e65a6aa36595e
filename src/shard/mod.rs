//! Several replicas sharing the work (`citystack run --shard`): each holds a contiguous part
//! of the UID hash space, decided by the live member Leases of its ring, and watches,
//! reconciles and writes only the objects in it (a stack's children and inline
//! AzureResources follow the stack, [`ring::key`]).
//!
//! Hand-over never lets two replicas write one object: a replica writes only a range it has
//! announced in its Lease, announces a range only when no live member announces an
//! overlapping one, and on any change of membership first stops, drains its in-flight
//! reconciles and announces nothing before it takes its new range. A replica that cannot
//! renew its Lease stops writing before the Lease can expire for the others (the same rule
//! as leader election). A replica that dies holds nothing once its Lease expires.

pub mod membership;
pub mod ring;
pub mod selector;

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::leader::{self, LeaderGate};
use ring::Range;

/// Ring settings (`citystack run --shard ...`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Ring name: the member Leases' label value and name prefix.
    pub ring: String,
    /// Namespace of the member Leases.
    pub namespace: String,
    /// This replica's identity (the Pod name in a cluster).
    pub identity: String,
    /// Lease duration, seconds: a silent member drops out after this long.
    pub duration: u64,
    /// Seconds before expiry at which the Lease is renewed (less than `duration`).
    pub grace: u64,
    /// Seconds in-flight reconciles get to finish at a hand-over.
    pub drain: Duration,
    /// Who filters the stacks.
    pub filter: Filter,
}

/// Who filters the stacks a sharded replica receives (`--shard-filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Filter {
    /// The API server when it supports `shardSelector`, else the replica.
    Auto,
    /// Always the replica (all stacks are received, those of other ranges dropped).
    Client,
}

/// The objects a replica reconciles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The hash range it holds.
    pub range: Range,
    /// Whether the API server filters SolutionStacks by range (else the replica filters).
    pub server_side: bool,
}

/// What a replica holds for one period between membership changes.
#[derive(Clone)]
pub struct Assignment {
    /// What it reconciles.
    pub scope: Scope,
    /// Open while the replica's Lease renewal is fresh.
    pub gate: LeaderGate,
    /// Live members of the ring, this replica included.
    pub members: usize,
}

/// A client like `client` whose SolutionStack lists and watches carry `range`'s shard
/// selector.
pub fn stack_client(client: &Client, range: &Range) -> Client {
    let (inner, query) = (client.clone(), selector::ShardQuery::new("solutionstacks", range));
    let send = tower::service_fn(move |mut request: http::Request<kube::client::Body>| {
        if let Some(uri) = query.rewrite(request.method(), request.uri()) {
            *request.uri_mut() = uri;
        }
        let client = inner.clone();
        async move { client.send(request).await }
    });
    Client::new(send, client.default_namespace().to_owned())
}

/// The label selector for the watches of a stack's children (Deployments, Services): every
/// managed child when unsharded; else only those labelled with a shard bucket that overlaps the
/// range, so the API server sends a replica about its share of them instead of all
/// ([`in_scope`] still drops the other ranges' children in the edge buckets).
///
/// A child written before its stack's bucket label existed is not watched until its stack's
/// next reconcile labels it (every stack is reconciled when a replica takes its range).
pub fn child_selector(scope: Option<&Scope>) -> String {
    let managed = crate::naming::managed_selector();
    match scope {
        Some(scope) if scope.range != Range::ALL => {
            format!("{managed},{} in ({})", crate::naming::SHARD_BUCKET_LABEL, scope.range.bucket_labels().join(","))
        }
        _ => managed,
    }
}

/// Whether `scope` holds the object (by [`ring::key`]); every object when unsharded.
pub fn keep<K: Resource>(scope: Option<&Scope>, object: &K) -> bool {
    scope.is_none_or(|scope| ring::holds(&scope.range, object.meta()))
}

/// For `filter` on a watch stream, before its cache: drops the events of objects outside
/// `scope`, so the cache never holds them.
pub fn in_scope<K: Resource>(
    scope: Option<Scope>,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) -> std::future::Ready<bool> {
    move |event| {
        let keep = match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o)) => {
                keep(scope.as_ref(), o)
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) | Err(_) => true,
        };
        std::future::ready(keep)
    }
}

/// Runs `work` for each range this replica holds, until `shutdown`; then leaves the ring.
/// `probe_namespace` is where the server-side filter is probed (`None`: all namespaces).
pub async fn run<F, Fut>(
    client: Client,
    settings: Settings,
    probe_namespace: Option<String>,
    shutdown: CancellationToken,
    mut work: F,
) where
    F: FnMut(Assignment, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().labels(&format!("{}={}", membership::RING_LABEL, settings.ring));
    let watch = watcher(api.clone(), config).default_backoff().reflect(writer).for_each(|event| {
        if let Err(error) = event {
            warn!(error = %crate::error::watch_message(&error), "sharding: watching member Leases");
        }
        std::future::ready(())
    });
    let stop_watch = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = watch => {}
            _ = stop_watch.cancelled() => {}
        }
    });
    let member = Member::new(api, &settings);
    let server_side = match settings.filter {
        Filter::Auto => probe(&client, probe_namespace.as_deref(), &shutdown).await,
        Filter::Client => false,
    };
    info!(
        ring = %settings.ring, identity = %settings.identity,
        mode = match (server_side, settings.filter) {
            (true, _) => "server-side (shardSelector)",
            (false, Filter::Client) => "client-side (--shard-filter client)",
            (false, Filter::Auto) => "client-side (the API server ignores shardSelector: ShardedListAndWatch is off)",
        },
        "sharding on"
    );
    tokio::select! {
        _ = store.wait_until_ready() => {}
        _ = shutdown.cancelled() => return,
    }
    while !shutdown.is_cancelled() {
        // 1. Announce, holding nothing, until the range this membership gives us is free.
        let Some(range) = member.wait_for_free_range(&store, &shutdown).await else { break };
        // 2. Hold it.
        let Some(validity) = member.renew(Some(&range)).await else { continue };
        let (gate, control) = LeaderGate::controlled();
        control.open_until(validity);
        let token = shutdown.child_token();
        let members = ring_now(&store, &settings.identity).1.len();
        let task = tokio::spawn(work(Assignment { scope: Scope { range, server_side }, gate, members }, token.clone()));
        info!(range = %range, members, "sharding: holding range");
        // 3. Renew until membership changes.
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if renewed.elapsed() >= member.renew_every {
                renewed = Instant::now();
                match member.renew(Some(&range)).await {
                    Some(until) => control.open_until(until),
                    // The gate closes by itself when the last renewal runs out.
                    None => warn!("sharding: renewing the member Lease failed; writes stop when it runs out"),
                }
            }
            if ring::range_of(&ring_now(&store, &settings.identity).1, &settings.identity) != Some(range) {
                info!(range = %range, "sharding: membership changed; handing the range over");
                break;
            }
        }
        // 4. Hand over: stop writing, drain, announce nothing.
        control.close();
        token.cancel();
        if tokio::time::timeout(settings.drain, task).await.is_err() {
            warn!(seconds = settings.drain.as_secs(), "sharding: in-flight reconciles did not finish in time");
        }
        member.renew(None).await;
    }
    membership::leave(&client, &settings.namespace, &settings.ring, &settings.identity).await;
    info!("sharding: left the ring");
}

/// The live members in the Lease cache, and the identities that split the ring: theirs and
/// this replica's, sorted and unique.
fn ring_now(store: &Store<Lease>, me: &str) -> (Vec<membership::Member>, Vec<String>) {
    let leases = store.state();
    let members = membership::members(leases.iter().map(|l| l.as_ref()), jiff::Timestamp::now());
    let mut ids: Vec<String> = members.iter().map(|m| m.identity.clone()).collect();
    ids.push(me.to_owned());
    ids.sort_unstable();
    ids.dedup();
    (members, ids)
}

/// This replica's side of the ring: its Lease and how often it is renewed.
struct Member {
    api: Api<Lease>,
    settings: Settings,
    renew_every: Duration,
    validity: Duration,
}

impl Member {
    fn new(api: Api<Lease>, settings: &Settings) -> Self {
        let margin = (settings.grace / 2).max(1);
        Self {
            api,
            settings: settings.clone(),
            renew_every: Duration::from_secs(settings.duration.saturating_sub(settings.grace).max(1)),
            validity: Duration::from_secs(settings.duration.saturating_sub(margin)),
        }
    }

    /// Renews the Lease announcing `held`; `Some(until)` writing may go on until, from the
    /// renewal the API server stored.
    async fn renew(&self, held: Option<&Range>) -> Option<Instant> {
        let s = &self.settings;
        match membership::renew(&self.api, &s.ring, &s.identity, s.duration, held).await {
            Ok(lease) => {
                let renewed = lease.spec.and_then(|s| s.renew_time).map(|t| t.0)?;
                leader::valid_until(renewed, self.validity, jiff::Timestamp::now(), Instant::now())
            }
            Err(error) => {
                warn!(error = %crate::error::kube_message(&error), "sharding: writing the member Lease");
                None
            }
        }
    }

    /// Announces this replica (holding nothing) and waits until no other live member holds
    /// any of the range the current membership gives it. `None` on shutdown.
    async fn wait_for_free_range(&self, store: &Store<Lease>, shutdown: &CancellationToken) -> Option<Range> {
        let me = &self.settings.identity;
        let mut renewed: Option<Instant> = None;
        loop {
            if renewed.is_none_or(|r| r.elapsed() >= self.renew_every) && self.renew(None).await.is_some() {
                renewed = Some(Instant::now());
            }
            let (members, ids) = ring_now(store, me);
            if let Some(target) = ring::range_of(&ids, me) {
                let taken = members.iter().any(|m| &m.identity != me && m.held.is_some_and(|h| h.overlaps(&target)));
                if !taken && renewed.is_some() {
                    return Some(target);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// Probes (with retries until `shutdown`) whether the API server filters by shard selector.
async fn probe(client: &Client, namespace: Option<&str>, shutdown: &CancellationToken) -> bool {
    loop {
        match selector::server_filters(client, namespace).await {
            Ok(filters) => return filters,
            Err(error) => warn!(error = %crate::error::kube_message(&error), "sharding: probing shardSelector support"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_watched_by_bucket_only_when_sharded() {
        let managed = "app.kubernetes.io/managed-by=citystack";
        assert_eq!(child_selector(None), managed);
        let whole = Scope { range: Range::ALL, server_side: true };
        assert_eq!(child_selector(Some(&whole)), managed);
        let half = Scope { range: Range { start: 0, end: ring::SPACE / 2 }, server_side: false };
        let selector = child_selector(Some(&half));
        assert!(selector.starts_with("app.kubernetes.io/managed-by=citystack,citystack.io/shard-bucket in (00,01,"));
        assert!(selector.ends_with(",7e,7f)"), "{selector}");
    }
}
