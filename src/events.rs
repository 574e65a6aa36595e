//! The Event recorder both controllers publish through: kube-runtime's `Recorder`, whose
//! cache of recent Events is started afresh every [`CACHE_TTL`].
//!
//! kube's Recorder keeps every Event it published so that a repeat within 6 minutes patches
//! the Event's series instead of creating another (events.k8s.io/v1 `series`), and it drops
//! old entries only when it publishes again. A converged fleet publishes nothing, so the
//! Events of its roll-out (about two per stack, 2–3 KB each) stayed in memory for good. Here
//! the cache is replaced by an empty one every 6 minutes: a repeat after a replacement
//! creates a new Event, as it would after the TTL anyway.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder as KubeRecorder, Reporter};

/// How long kube's Recorder keeps a published Event for series (its `CACHE_TTL`, 6 minutes).
pub const CACHE_TTL: Duration = Duration::from_secs(6 * 60);

/// Publishes Events as `reporter`. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    reporter: Reporter,
    current: Mutex<KubeRecorder>,
}

impl Recorder {
    /// A recorder for `reporter`; its cache is replaced every [`CACHE_TTL`] while any clone
    /// lives (a task on the current Tokio runtime).
    pub fn new(client: Client, reporter: Reporter) -> Self {
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
        Self { inner }
    }

    /// Publishes `event` about `reference` (creates it, or patches its series when the same
    /// Event was published since the last renewal).
    ///
    /// Errors: the API server's refusal (`kube::Error`).
    pub async fn publish(&self, event: &Event, reference: &ObjectReference) -> Result<(), kube::Error> {
        let recorder = match self.inner.current.lock() {
            Ok(current) => current.clone(),
            // A poisoned lock only means another publish panicked mid-clone: start afresh.
            Err(_) => KubeRecorder::new(self.inner.client.clone(), self.inner.reporter.clone()),
        };
        recorder.publish(event, reference).await
    }
}

impl Inner {
    fn renew(&self) {
        let fresh = KubeRecorder::new(self.client.clone(), self.reporter.clone());
        if let Ok(mut current) = self.current.lock() {
            *current = fresh;
        }
    }
}
