//! Deleting an AzureResource: with policy Delete, the Azure resource goes first (only when
//! this object owns it, and a resource group only when everything in it is this object's),
//! then the finalizer. A person may abandon the Azure cleanup with an annotation.

use serde_json::Value;

use crate::api::AzureKind;
use crate::error::bounded;
use crate::naming::OWNER_TAG;

/// api-version of `GET {group}/resources` (Microsoft.Resources, "Resources - List By
/// Resource Group").
pub const LIST_API_VERSION: &str = "2025-04-01";
/// Most pages of a group's resource list read before giving up (ARM pages hold up to 1000).
pub const MAX_PAGES: usize = 100;
/// How many foreign resources a condition names.
const NAMED: usize = 5;

/// What deleting should do in Azure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Nothing there (404): remove the finalizer.
    Gone,
    /// The resource does not carry this object's owner tag: leave it, remove the finalizer.
    NotOurs,
    /// A resource group holds resources this object does not own: leave it and say which.
    Blocked {
        /// Names up to five foreign resources and the count.
        message: String,
    },
    /// Send the DELETE.
    Delete,
    /// ARM is deleting it already (`provisioningState: Deleting`): wait, do not send another.
    InProgress,
}

/// Decides the deletion (pure). `resource` is the GET body (`None`: 404); `contents` is
/// every resource in the group (all pages) for a ResourceGroup. Ownership is exactly this
/// object's `owner` tag value: another object's tag (even a sibling's with policy Orphan)
/// counts as foreign.
pub fn decide(kind: AzureKind, owner: &str, resource: Option<&Value>, contents: &[Value]) -> Deletion {
    let Some(resource) = resource else { return Deletion::Gone };
    if !owned(resource, owner) {
        return Deletion::NotOurs;
    }
    let state = resource.pointer("/properties/provisioningState").and_then(Value::as_str);
    if state.is_some_and(|s| s.eq_ignore_ascii_case("deleting")) {
        return Deletion::InProgress;
    }
    if kind != AzureKind::ResourceGroup {
        return Deletion::Delete;
    }
    let foreign: Vec<String> = contents
        .iter()
        .filter(|r| !owned(r, owner))
        .map(|r| r.get("id").and_then(Value::as_str).map(|id| bounded(id, 300)).unwrap_or_else(|| "(no id)".into()))
        .collect();
    if foreign.is_empty() {
        return Deletion::Delete;
    }
    let named = foreign.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
    let more = foreign.len().saturating_sub(NAMED);
    let message = format!(
        "not deleting the resource group: it holds {} resource(s) this AzureResource does not own: {named}{}; delete or move them, or set deletionPolicy: Orphan (or the citystack.io/abandon annotation) to leave the group",
        foreign.len(),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    );
    Deletion::Blocked { message }
}

fn owned(resource: &Value, owner: &str) -> bool {
    resource.pointer(&format!("/tags/{OWNER_TAG}")).and_then(Value::as_str) == Some(owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OWNER: &str = "c/ns/rg";

    fn tagged(id: &str, owner: Option<&str>) -> Value {
        match owner {
            Some(o) => json!({"id": id, "tags": {OWNER_TAG: o}}),
            None => json!({"id": id, "tags": {}}),
        }
    }

    #[test]
    fn deletion_table() {
        let group = tagged("/g", Some(OWNER));
        let ours = tagged("/g/a", Some(OWNER));
        let sibling = tagged("/g/orphan-policy-sibling", Some("c/ns/files"));
        let other_namespace = tagged("/g/other", Some("c/other-ns/x"));
        let hand_made = tagged("/g/hand-made", None);
        let rg = AzureKind::ResourceGroup;
        assert_eq!(decide(rg, OWNER, None, &[]), Deletion::Gone);
        assert_eq!(decide(rg, OWNER, Some(&tagged("/g", None)), &[]), Deletion::NotOurs);
        assert_eq!(decide(rg, OWNER, Some(&tagged("/g", Some("c/ns/other"))), &[]), Deletion::NotOurs);
        assert_eq!(decide(rg, OWNER, Some(&group), &[]), Deletion::Delete);
        assert_eq!(decide(rg, OWNER, Some(&group), std::slice::from_ref(&ours)), Deletion::Delete);
        for foreign in [&sibling, &other_namespace, &hand_made] {
            let got = decide(rg, OWNER, Some(&group), &[ours.clone(), foreign.clone()]);
            let id = foreign["id"].as_str().unwrap_or_default();
            assert!(
                matches!(&got, Deletion::Blocked { message } if message.contains(id) && message.contains("1 resource")),
                "{got:?}"
            );
        }
        assert_eq!(
            decide(AzureKind::RedisCache, OWNER, Some(&tagged("/r", Some(OWNER))), &[hand_made]),
            Deletion::Delete
        );
    }

    #[test]
    fn blocked_names_five_and_counts_the_rest() {
        let group = tagged("/g", Some(OWNER));
        let contents: Vec<Value> = (0..12).map(|i| tagged(&format!("/g/r{i}"), None)).collect();
        let Deletion::Blocked { message } = decide(AzureKind::ResourceGroup, OWNER, Some(&group), &contents) else {
            panic!("not blocked")
        };
        assert!(
            message.contains("12 resource(s)") && message.contains("/g/r4") && !message.contains("/g/r5"),
            "{message}"
        );
        assert!(message.contains("and 7 more"), "{message}");
    }
}
