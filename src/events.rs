//! The Event recorder both controllers publish through: kube-runtime's `Recorder` behind a
//! bounded queue, whose cache of recent Events is started afresh every [`CACHE_TTL`].
//!
//! Publishing only queues the Event; a background task sends up to [`SENDERS`] at once. An
//! Event is a write to the API server (about two per stack while a fleet rolls out), and a
//! reconcile that waited for it held a turn for one more round trip. When [`QUEUE`] Events
//! are waiting, more are dropped and counted (`citystack_events_dropped_total`), as
//! client-go's event broadcaster drops past its queue: Events are best effort, conditions
//! carry the state.
//!
//! kube's Recorder keeps every Event it published so that a repeat within 6 minutes patches
//! the Event's series instead of creating another (events.k8s.io/v1 `series`), and it drops
//! old entries only when it publishes again. A converged fleet publishes nothing, so the
//! Events of its roll-out (about two per stack, 2–3 KB each) stayed in memory for good. Here
//! the cache is replaced by an empty one every 6 minutes: a repeat after a replacement
//! creates a new Event, as it would after the TTL anyway.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder as KubeRecorder, Reporter};
use tokio::sync::mpsc;
use tracing::warn;

use crate::telemetry::Metrics;

/// How long kube's Recorder keeps a published Event for series (its `CACHE_TTL`, 6 minutes).
pub const CACHE_TTL: Duration = Duration::from_secs(6 * 60);

/// Events waiting to be sent, at most; past it they are dropped.
pub const QUEUE: usize = 1024;

/// Events sent at once.
pub const SENDERS: usize = 4;

/// Publishes Events as `reporter`. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<(Event, ObjectReference)>,
    metrics: Metrics,
}

struct Inner {
    client: Client,
    reporter: Reporter,
    current: Mutex<KubeRecorder>,
}

impl Recorder {
    /// A recorder for `reporter`, with two tasks on the current Tokio runtime: the sender,
    /// which ends when the last clone is dropped and the queue is drained, and the renewal of
    /// the series cache every [`CACHE_TTL`], which ends with the sender.
    pub fn new(client: Client, reporter: Reporter, metrics: Metrics) -> Self {
        let current = Mutex::new(KubeRecorder::new(client.clone(), reporter.clone()));
        let inner = Arc::new(Inner { client, reporter, current });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CACHE_TTL).await;
                let Some(inner) = weak.upgrade() else { return };
                inner.renew();
            }
        });
        let (queue, receiver) = mpsc::channel(QUEUE);
        let queued = futures::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|item| (item, r)) });
        tokio::spawn(queued.for_each_concurrent(SENDERS, move |(event, reference)| {
            let recorder = inner.recorder();
            async move {
                if let Err(error) = recorder.publish(&event, &reference).await {
                    warn!(%error, reason = %event.reason, "publishing an Event failed");
                }
            }
        }));
        Self { queue, metrics }
    }

    /// Queues `event` about `reference` to be created (or its series patched, when the same
    /// Event was published since the last renewal). Never waits: with [`QUEUE`] Events
    /// waiting, this one is dropped and counted.
    pub fn publish(&self, event: Event, reference: ObjectReference) {
        match self.queue.try_send((event, reference)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.metrics.event_dropped(),
            // Only if the sender task ended, which it does not while a clone lives.
            Err(mpsc::error::TrySendError::Closed((event, _))) => {
                self.metrics.event_dropped();
                warn!(reason = %event.reason, "Event not published: the sender task has ended");
            }
        }
    }
}

impl Inner {
    fn recorder(&self) -> KubeRecorder {
        match self.current.lock() {
            Ok(current) => current.clone(),
            // A poisoned lock only means another publish panicked mid-clone: start afresh.
            Err(_) => KubeRecorder::new(self.client.clone(), self.reporter.clone()),
        }
    }

    fn renew(&self) {
        let fresh = KubeRecorder::new(self.client.clone(), self.reporter.clone());
        if let Ok(mut current) = self.current.lock() {
            *current = fresh;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose API server never answers: every send hangs.
    fn silent_client() -> Client {
        let service = tower::service_fn(|_request: http::Request<kube::client::Body>| {
            futures::future::pending::<Result<http::Response<kube::client::Body>, std::convert::Infallible>>()
        });
        Client::new(service, "default")
    }

    fn event(i: usize) -> Event {
        Event {
            type_: kube::runtime::events::EventType::Normal,
            reason: "Created".into(),
            note: Some(format!("event {i}")),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    #[tokio::test]
    async fn publishing_never_waits_and_drops_past_the_queue() {
        let metrics = Metrics::new();
        let recorder =
            Recorder::new(silent_client(), Reporter { controller: "test".into(), instance: None }, metrics.clone());
        let reference = ObjectReference { name: Some("s".into()), namespace: Some("n".into()), ..Default::default() };
        // With the API server silent, a publish that waited for its Event would never return.
        for i in 0..QUEUE + 10 {
            recorder.publish(event(i), reference.clone());
        }
        assert!(metrics.encode().contains("citystack_events_dropped_total 10\n"), "{}", metrics.encode());
    }
}
