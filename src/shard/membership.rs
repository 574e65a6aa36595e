//! Who is in the ring: one coordination.k8s.io Lease per replica, labelled with the ring's
//! name, renewed like a leader's Lease, carrying in an annotation the range the replica
//! currently holds (writes to). A Lease whose `renewTime + leaseDurationSeconds` has passed
//! is a member no more, and holds nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::ring::Range;

/// Label naming the ring a member Lease belongs to.
pub const RING_LABEL: &str = "citystack.io/shard-ring";
/// Annotation with the range a member holds (`<start>-<end>` in hex); absent or empty: none.
pub const HELD_ANNOTATION: &str = "citystack.io/shard-held";
/// Field manager of member Leases.
const MANAGER: &str = "citystack-shard";

/// A live member as its Lease shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `spec.holderIdentity`.
    pub identity: String,
    /// The range it holds now; `None` while it holds nothing (starting, handing over).
    pub held: Option<Range>,
}

/// The Lease name of `identity` in ring `ring`: `<ring>-<identity>`, lower-cased, with any
/// character a Lease name cannot hold replaced by `-`, at most 253 characters.
pub fn lease_name(ring: &str, identity: &str) -> String {
    let raw = format!("{ring}-{identity}").to_ascii_lowercase();
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .take(253)
        .collect();
    cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

/// The members whose Leases are still valid at `now` (pure). Leases are written by other
/// replicas, so every field is untrusted: a duration outside 1..=3600 s, a missing holder or
/// renewal make the Lease count as gone; a bad held range counts as holding nothing.
pub fn members<'a>(leases: impl IntoIterator<Item = &'a Lease>, now: jiff::Timestamp) -> Vec<Member> {
    let mut out: BTreeMap<String, Member> = BTreeMap::new();
    for lease in leases {
        let Some(spec) = lease.spec.as_ref() else { continue };
        let (Some(identity), Some(renewed), Some(seconds)) =
            (spec.holder_identity.as_ref(), spec.renew_time.as_ref(), spec.lease_duration_seconds)
        else {
            continue;
        };
        if identity.is_empty() || !(1..=3600).contains(&seconds) {
            continue;
        }
        let expires = renewed.0.checked_add(jiff::SignedDuration::from_secs(i64::from(seconds)));
        if !expires.is_ok_and(|e| e > now) {
            continue;
        }
        let held = lease.annotations().get(HELD_ANNOTATION).and_then(|a| Range::from_annotation(a));
        out.insert(identity.clone(), Member { identity: identity.clone(), held });
    }
    out.into_values().collect()
}

/// Writes this replica's Lease (server-side apply): holder, duration, `renewTime` now, and the
/// range it holds.
///
/// Errors: the API server's.
pub async fn renew(
    api: &Api<Lease>,
    ring: &str,
    identity: &str,
    duration: u64,
    held: Option<&Range>,
) -> Result<Lease, kube::Error> {
    let name = lease_name(ring, identity);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": name,
            "labels": {RING_LABEL: ring},
            "annotations": {HELD_ANNOTATION: held.map(Range::to_annotation).unwrap_or_default()},
        },
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration,
            "renewTime": MicroTime(jiff::Timestamp::now()),
        }
    });
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&lease)).await
}

/// Deletes this replica's Lease (a clean stop), so the others rebalance at once instead of
/// after the lease duration. A Lease already gone is fine.
pub async fn leave(client: &Client, namespace: &str, ring: &str, identity: &str) {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let _ = api.delete(&lease_name(ring, identity), &DeleteParams::default()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(identity: &str, renewed: i64, seconds: i32, held: Option<&str>) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": lease_name("citystack", identity), "annotations": {HELD_ANNOTATION: held.unwrap_or("")}},
            "spec": {"holderIdentity": identity, "leaseDurationSeconds": seconds,
                "renewTime": jiff::Timestamp::from_second(renewed).unwrap_or_default().to_string()}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_valid_leases_are_members() {
        let now = jiff::Timestamp::from_second(1_000).unwrap_or_default();
        let leases = [
            lease("b", 995, 15, Some("0x8000000000000000-0x10000000000000000")),
            lease("a", 990, 15, None),
            lease("expired", 980, 15, Some("0x0000000000000000-0x8000000000000000")),
            lease("huge", 990, 86_400, None),
            lease("zero", 999, 0, None),
            lease("garbled", 999, 15, Some("everything")),
        ];
        let found = members(&leases, now);
        let names: Vec<&str> = found.iter().map(|m| m.identity.as_str()).collect();
        assert_eq!(names, ["a", "b", "garbled"]);
        assert_eq!(found[1].held.map(|r| r.start), Some(1 << 63));
        assert_eq!(found[2].held, None);
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(lease_name("citystack", "citystack-5d8f-x2"), "citystack-citystack-5d8f-x2");
        assert_eq!(lease_name("citystack", "Host_A-42"), "citystack-host-a-42");
        assert_eq!(lease_name("citystack", &"x".repeat(400)).len(), 253);
    }
}
