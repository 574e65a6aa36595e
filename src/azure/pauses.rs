//! ARM throttling pauses shared among sharded replicas: ARM throttles a subscription and
//! principal, not a replica, so a `Retry-After` one replica receives must hold back the others
//! too. Each replica writes its pauses as annotations of one Lease of the ring,
//! `<ring>-arm-pauses` (`arm-pause.citystack.io/<pause name>: <RFC 3339 deadline>`, under a field
//! manager of its own, so replicas never remove each other's), and follows the Lease to
//! pause what the others announce. The Lease has no holder: it is not a ring member.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::azure::budget::Throttling;
use crate::azure::response::MAX_RETRY_AFTER;

/// Prefix of the pause annotations.
pub const PREFIX: &str = "arm-pause.citystack.io/";

/// Name of the ring's pause Lease.
pub fn lease_name(ring: &str) -> String {
    format!("{ring}-arm-pauses")
}

/// The pauses a Lease announces (pure): `(pause name, until)`, deadlines in the past left out
/// and those further than [`MAX_RETRY_AFTER`] cut to it (other replicas are trusted to share,
/// not to stop this one for ever).
pub fn announced(lease: &Lease, now: SystemTime) -> Vec<(String, SystemTime)> {
    lease
        .annotations()
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(PREFIX)?;
            let until: jiff::Timestamp = value.parse().ok()?;
            let until = SystemTime::from(until);
            (until > now).then(|| (name.to_owned(), until.min(now + MAX_RETRY_AFTER)))
        })
        .collect()
}

/// Shares this replica's pauses and follows the others' until `shutdown`.
pub async fn run(
    client: Client,
    namespace: String,
    ring: String,
    identity: String,
    throttling: Arc<Throttling>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let name = lease_name(&ring);
    let manager: String = format!("citystack-pauses-{identity}").chars().take(128).collect();
    let mut announcements = throttling.announcements();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut leases = std::pin::pin!(watcher(api.clone(), config).default_backoff().applied_objects());
    let mut mine: BTreeMap<String, SystemTime> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            announcement = announcements.recv() => {
                let Some((pause, until)) = announcement else { return };
                let now = SystemTime::now();
                mine.retain(|_, u| *u > now);
                mine.insert(pause, until);
                let annotations: serde_json::Map<String, serde_json::Value> = mine
                    .iter()
                    .filter_map(|(p, u)| Some((format!("{PREFIX}{p}"), jiff::Timestamp::try_from(*u).ok()?.to_string().into())))
                    .collect();
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "annotations": annotations},
                });
                if let Err(error) = api.patch(&name, &PatchParams::apply(&manager).force(), &Patch::Apply(&lease)).await {
                    warn!(error = %crate::error::kube_message(&error), "sharing an ARM pause with the other replicas");
                }
            }
            next = leases.next() => match next {
                Some(Ok(lease)) => {
                    for (pause, until) in announced(&lease, SystemTime::now()) {
                        throttling.pause_announced(&pause, until);
                    }
                }
                Some(Err(error)) => warn!(error = %crate::error::watch_message(&error), "following the ARM pauses of the other replicas"),
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_future_well_formed_pauses_count_and_none_for_ever() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s: u64| {
            jiff::Timestamp::try_from(SystemTime::UNIX_EPOCH + Duration::from_secs(s)).unwrap_or_default().to_string()
        };
        let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "ring-arm-pauses", "annotations": {
            format!("{PREFIX}aaaa"): at(1_000_030),
            format!("{PREFIX}past"): at(999_000),
            format!("{PREFIX}forever"): at(9_000_000),
            format!("{PREFIX}garbled"): "soon",
            "other.example/x": at(1_000_030),
        }}}))
        .unwrap_or_else(|e| panic!("{e}"));
        let got = announced(&lease, now);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["aaaa", "forever"]);
        assert_eq!(got[0].1, now + Duration::from_secs(30));
        assert_eq!(got[1].1, now + MAX_RETRY_AFTER);
    }
}
