//! Leader election on a coordination.k8s.io Lease (through kube-lease-manager): only the
//! leader writes; followers keep their caches warm and take over when the lease expires.
//!
//! Safety rule (client-go leaderelection semantics): a leader that cannot renew must stop
//! writing before its lease can expire for the others. The lease manager only reports a
//! change after talking to the API server, which a partitioned leader cannot do, so the
//! [`LeaderGate`] also keeps a local deadline: each renewal seen on a watch of the Lease
//! extends it to `duration - margin` seconds ahead; without renewals, writing stops on its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// When a reconcile refused because this instance may not write (a follower, or a leader
/// whose renewal is late) runs again: refused work is re-queued, never dropped, and a
/// promotion re-queues every object at once anyway.
pub const NOT_LEADER_RETRY: Duration = Duration::from_secs(15);

/// Lease settings (`citystack run --leader-elect ...`).
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This instance's identity (the Pod name in a cluster).
    pub identity: String,
    /// Lease duration in seconds: how long a silent leader keeps the lease.
    pub duration: u64,
    /// Seconds before expiry at which the leader renews; less than `duration`.
    pub grace: u64,
}

/// Whether this instance may write now. Cheap to clone and to check.
#[derive(Clone)]
pub struct LeaderGate {
    inner: Option<Arc<GateState>>,
}

struct GateState {
    leader: watch::Receiver<bool>,
    valid_until: Mutex<Option<Instant>>,
}

impl LeaderGate {
    /// A gate that is always open: leader election is off (a single replica).
    pub fn always() -> Self {
        Self { inner: None }
    }

    /// Whether this instance holds the lease and its last renewal is recent enough.
    pub fn is_leader(&self) -> bool {
        // Both must hold: the elector says we lead, and the last renewal seen is fresh.
        let Some(state) = &self.inner else { return true };
        let fresh = state.valid_until.lock().ok().and_then(|v| *v).is_some_and(|until| Instant::now() < until);
        *state.leader.borrow() && fresh
    }

    /// A stream that yields each time this instance becomes leader (for
    /// `Controller::reconcile_all_on`: followers dropped their requeues, so a new leader
    /// reconciles everything). Never yields when election is off.
    pub fn promotions(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.changes(), |mut changes| async move {
            loop {
                if changes.changed().await.is_err() {
                    return None;
                }
                if *changes.borrow_and_update() {
                    return Some(((), changes));
                }
            }
        })
    }

    /// A receiver that turns true whenever this instance becomes leader (always true when
    /// election is off).
    pub fn changes(&self) -> watch::Receiver<bool> {
        match &self.inner {
            Some(state) => state.leader.clone(),
            None => watch::channel(true).1,
        }
    }
}

/// The writing side of a gate that something other than leader election drives: a sharded
/// replica opens it for as long as its own Lease renewal is fresh.
pub struct GateControl {
    tx: watch::Sender<bool>,
    state: Arc<GateState>,
}

impl LeaderGate {
    /// A closed gate and its control.
    pub fn controlled() -> (LeaderGate, GateControl) {
        let (tx, rx) = watch::channel(false);
        let state = Arc::new(GateState { leader: rx, valid_until: Mutex::new(None) });
        (LeaderGate { inner: Some(state.clone()) }, GateControl { tx, state })
    }
}

impl GateControl {
    /// Opens the gate until `until` (when a renewal stops being valid): without a later
    /// call, writing stops on its own then.
    pub fn open_until(&self, until: Instant) {
        if let Ok(mut valid) = self.state.valid_until.lock() {
            *valid = Some(until);
        }
        self.tx.send_if_modified(|open| !std::mem::replace(open, true));
    }

    /// Closes the gate now.
    pub fn close(&self) {
        if let Ok(mut valid) = self.state.valid_until.lock() {
            *valid = None;
        }
        self.tx.send_if_modified(|open| std::mem::replace(open, false));
    }
}

/// Starts leader election in the background. The returned task releases the lease when
/// `shutdown` is cancelled and then ends.
///
/// Errors: none at start; API errors are logged and retried (the gate stays closed meanwhile).
pub fn elect(
    client: Client,
    settings: LeaseSettings,
    shutdown: CancellationToken,
) -> (LeaderGate, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let state = Arc::new(GateState { leader: rx, valid_until: Mutex::new(None) });
    // A renewal keeps the gate open until `margin` seconds before the lease would expire.
    let margin = (settings.grace / 2).max(1);
    let validity = Duration::from_secs(settings.duration.saturating_sub(margin));
    tokio::spawn(watch_renewals(client.clone(), settings.clone(), state.clone(), validity, shutdown.clone()));
    let gate = LeaderGate { inner: Some(state.clone()) };
    let task = tokio::spawn(async move {
        let mut manager: Option<LeaseManager> = None;
        loop {
            let current = match manager.take() {
                Some(m) => m,
                None => match build(&client, &settings).await {
                    Ok(m) => m,
                    Err(error) => {
                        warn!(error = %readable(&error), "leader election: cannot set up the Lease; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                        }
                    }
                },
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = tx.send(false);
                    match current.release().await {
                        Ok(()) => info!("leader election: lease released"),
                        Err(error) => warn!(error = %readable(&error), "leader election: releasing the lease failed"),
                    }
                    return;
                }
                changed = current.changed() => match changed {
                    Ok(leader) => {
                        // The gate opens when the watch shows the Lease's renewTime (below):
                        // validity counts from the renewal itself, not from this event.
                        info!(leader, identity = %settings.identity, "leader election: {}", if leader { "became leader" } else { "following" });
                        let _ = tx.send(leader);
                        manager = Some(current);
                    }
                    Err(error) => {
                        // Start over with a fresh manager: it reports the state it finds
                        // (still holder, or not) instead of waiting for a change.
                        warn!(error = %readable(&error), "leader election: renewing failed; writes stop until the lease is confirmed");
                        let _ = tx.send(false);
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                },
            }
        }
    });
    (gate, task)
}

/// A lease manager error as a person reads it: a Kubernetes refusal by the API server's own
/// message, never the client's Debug dump.
fn readable(error: &kube_lease_manager::LeaseManagerError) -> String {
    match error {
        kube_lease_manager::LeaseManagerError::KubeError(e) => crate::error::kube_message(e),
        other => other.to_string(),
    }
}

async fn build(
    client: &Client,
    settings: &LeaseSettings,
) -> Result<LeaseManager, kube_lease_manager::LeaseManagerError> {
    LeaseManagerBuilder::new(client.clone(), &settings.name)
        .with_namespace(&settings.namespace)
        .with_parameters(LeaseParams::new(&settings.identity, settings.duration, settings.grace))
        .build()
        .await
}

/// When writing must stop after a renewal at `renewed` (the Lease's `renewTime`): `validity`
/// after it, as an [`Instant`] (`now_wall` and `now` are the same moment on the two clocks).
/// `None` when that moment has passed. A renewal time in the future (clock skew) counts as now.
pub fn valid_until(
    renewed: jiff::Timestamp,
    validity: Duration,
    now_wall: jiff::Timestamp,
    now: Instant,
) -> Option<Instant> {
    let age = now_wall.duration_since(renewed);
    let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
    let left = validity.checked_sub(age)?;
    now.checked_add(left).filter(|_| !left.is_zero())
}

/// Sets the gate's deadline from each renewal the Lease shows (see [`valid_until`]).
async fn watch_renewals(
    client: Client,
    settings: LeaseSettings,
    state: Arc<GateState>,
    validity: Duration,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", settings.name));
    let mut leases = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = leases.next() => next,
        };
        match next {
            Some(Ok(lease)) => {
                let spec = lease.spec.as_ref();
                let ours = spec.and_then(|s| s.holder_identity.as_deref()) == Some(settings.identity.as_str());
                let renewed = spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0);
                if let Ok(mut until) = state.valid_until.lock() {
                    *until = match (ours, renewed) {
                        (true, Some(renewed)) => valid_until(renewed, validity, jiff::Timestamp::now(), Instant::now()),
                        // Another holder, or no renewal recorded: not ours to write with.
                        _ => None,
                    };
                }
            }
            Some(Err(error)) => {
                warn!(error = %crate::error::watch_message(&error), "leader election: watching the Lease")
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_counts_from_the_renewal_not_the_event() {
        let now = Instant::now();
        let wall = jiff::Timestamp::from_second(1_000_000).unwrap_or_default();
        let validity = Duration::from_secs(14);
        let ago = |s: i64| wall.checked_sub(jiff::SignedDuration::from_secs(s)).unwrap_or(wall);
        assert_eq!(valid_until(wall, validity, wall, now), Some(now + validity));
        // An event that arrives 10 s after the renewal leaves only 4 s.
        assert_eq!(valid_until(ago(10), validity, wall, now), Some(now + Duration::from_secs(4)));
        assert_eq!(valid_until(ago(14), validity, wall, now), None);
        assert_eq!(valid_until(ago(600), validity, wall, now), None);
        let future = wall.checked_add(jiff::SignedDuration::from_secs(30)).unwrap_or(wall);
        assert_eq!(valid_until(future, validity, wall, now), Some(now + validity));
    }
}
