//! The cluster's identity: the UID of the `kube-system` Namespace. It goes into the owner tag
//! of every Azure resource the operator creates and into derived Azure names, so it must be
//! read, never guessed: with an empty identity two clusters would claim each other's
//! resources. Until it is read the Azure controller does not start (see `crate::run`).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::{Client, ResourceExt};
use tracing::warn;

/// The Namespace whose UID names the cluster.
pub const NAMESPACE: &str = "kube-system";

/// Longest UID accepted (Kubernetes UIDs are 36-character UUIDs).
const MAX_UID_LEN: usize = 64;

/// Why the cluster's identity could not be read. Messages name the object and the API
/// server's answer, nothing else.
#[derive(Debug, thiserror::Error)]
pub enum ClusterIdentityError {
    /// The GET of the Namespace failed (unreachable API server, 403, 404...).
    #[error("reading Namespace {NAMESPACE}: {}", crate::error::kube_message(.0))]
    Read(#[source] kube::Error),
    /// The Namespace has no UID, an empty one, or one that is not a UID.
    #[error("Namespace {NAMESPACE} has no usable UID (expected 1 to {MAX_UID_LEN} ASCII letters, digits or hyphens)")]
    Unusable,
}

/// How often [`cluster_identity`] tries, and how long it waits in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts {
    /// Tries in all (at least one).
    pub tries: usize,
    /// Wait after the first failure; doubled (with jitter) after each further one.
    pub first_delay: Duration,
    /// Longest wait between tries.
    pub max_delay: Duration,
}

impl Default for Attempts {
    /// Six tries, waiting 1, 2, 4, 8 and 16 seconds (with jitter) in between.
    fn default() -> Self {
        Self { tries: 6, first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(30) }
    }
}

impl Attempts {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.tries.max(1) - 1)
            .with_jitter()
    }
}

/// `uid` if it is a usable cluster identity: 1 to 64 ASCII letters, digits or hyphens.
///
/// Errors: [`ClusterIdentityError::Unusable`] for a missing, empty or malformed UID.
pub fn checked_uid(uid: Option<&str>) -> Result<String, ClusterIdentityError> {
    match uid {
        Some(uid)
            if (1..=MAX_UID_LEN).contains(&uid.len())
                && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Ok(uid.to_owned())
        }
        _ => Err(ClusterIdentityError::Unusable),
    }
}

/// The cluster's identity: the UID of Namespace `kube-system` (a metadata-only GET), tried
/// up to `attempts.tries` times with exponential backoff. Each failed try is logged as one
/// warning naming the error.
///
/// Errors: the last try's [`ClusterIdentityError`] once every try failed; an empty UID is an
/// error, never an identity.
pub async fn cluster_identity(client: &Client, attempts: Attempts) -> Result<String, ClusterIdentityError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let read = || async {
        let namespace = namespaces.get_metadata(NAMESPACE).await.map_err(ClusterIdentityError::Read)?;
        checked_uid(namespace.uid().as_deref())
    };
    read.retry(attempts.backoff())
        .notify(|error: &ClusterIdentityError, wait: Duration| {
            warn!(%error, retry_in_ms = wait.as_millis() as u64, "cluster identity not read: {error}");
        })
        .await
        .inspect_err(
            |error| warn!(%error, tries = attempts.tries, "cluster identity not read, giving up this round: {error}"),
        )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn only_real_uids_are_identities() {
        assert_eq!(
            checked_uid(Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")).ok().as_deref(),
            Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        );
        assert!(matches!(checked_uid(None), Err(ClusterIdentityError::Unusable)));
        assert!(matches!(checked_uid(Some("")), Err(ClusterIdentityError::Unusable)));
        assert!(matches!(checked_uid(Some("a/b")), Err(ClusterIdentityError::Unusable)));
        assert!(matches!(checked_uid(Some(" ")), Err(ClusterIdentityError::Unusable)));
        assert!(matches!(checked_uid(Some(&"a".repeat(65))), Err(ClusterIdentityError::Unusable)));
    }

    #[test]
    fn attempts_count_tries_not_retries() {
        use backon::BackoffBuilder;
        let attempts = Attempts { tries: 3, first_delay: Duration::from_millis(10), max_delay: Duration::from_secs(1) };
        assert_eq!(attempts.backoff().build().count(), 2);
        assert_eq!(Attempts { tries: 0, ..attempts }.backoff().build().count(), 0);
    }

    /// A kube client whose API server answers `answers[n]` (status, body) to the n-th
    /// request, repeating the last answer; counts the requests.
    fn fake_client(answers: Vec<(u16, String)>) -> (Client, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let service = tower::service_fn(move |_request: http::Request<kube::client::Body>| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (status, body) = answers.get(n).or(answers.last()).cloned().unwrap_or((500, String::new()));
            async move {
                http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(body.into_bytes()))
            }
        });
        (Client::new(service, "default"), calls)
    }

    fn unavailable() -> (u16, String) {
        let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd is unavailable","reason":"ServiceUnavailable","code":503}"#;
        (503, body.into())
    }

    fn kube_system(uid: &str) -> (u16, String) {
        let body = serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "kube-system", "uid": uid}
        });
        (200, body.to_string())
    }

    const QUICK: Attempts =
        Attempts { tries: 4, first_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) };

    #[tokio::test]
    async fn retries_until_the_uid_is_read() {
        let uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let (client, calls) = fake_client(vec![unavailable(), unavailable(), kube_system(uid)]);
        let read = cluster_identity(&client, QUICK).await;
        assert_eq!(read.ok().as_deref(), Some(uid));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_empty_uid_is_refused() {
        let (client, calls) = fake_client(vec![kube_system("")]);
        let read = cluster_identity(&client, QUICK).await;
        assert!(matches!(read, Err(ClusterIdentityError::Unusable)), "{read:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn gives_up_after_the_last_try_naming_the_error() {
        let (client, calls) = fake_client(vec![unavailable()]);
        let read = cluster_identity(&client, Attempts { tries: 2, ..QUICK }).await;
        let message = read.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("kube-system") && message.contains("etcd is unavailable"), "{message}");
        assert!(!message.contains("Status {") && !message.contains("ApiError"), "a client dump: {message}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
