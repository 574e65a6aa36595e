//! Who controls an object whose name citystack derives. A derived name (`<stack>-<component>`,
//! `<azureresource>-binding`) may already be taken: by another stack's child (`a-b` + `c` and
//! `a` + `b-c` both give `a-b-c`), a Helm release's Service, a hand-made Secret. Such an object
//! is never written, never pruned and never counted in status; the writer reports a
//! [`Category::Conflict`] naming it and its owner. Pure.
//!
//! "Controls" follows the Kubernetes garbage collector's notion (API conventions,
//! "ownerReferences"): the one ownerReference with `controller: true`, matched by UID, since a
//! name can be reused by a new object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::error::{Category, Error};

/// The annotation Helm sets on what a release installs (Helm docs, "Resource ownership"); it
/// names the owner of a conflicting object in messages.
pub const HELM_RELEASE: &str = "meta.helm.sh/release-name";

/// How a live object relates to the would-be controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// No object of that name exists: it may be created.
    Absent,
    /// The object's controller ownerReference carries the controller's UID.
    Ours,
    /// Someone else's, described for a person (e.g. `SolutionStack a-b`, `Helm release web`,
    /// `no controller`).
    Foreign(String),
}

/// Whether `live` (the object of that name, if any) is controlled by the object with UID
/// `controller_uid`.
pub fn control(live: Option<&ObjectMeta>, controller_uid: &str) -> Control {
    let Some(meta) = live else { return Control::Absent };
    if controls(meta, controller_uid) { Control::Ours } else { Control::Foreign(owner_of(meta)) }
}

/// Whether the object's controller ownerReference carries `controller_uid`.
pub fn controls(meta: &ObjectMeta, controller_uid: &str) -> bool {
    !controller_uid.is_empty()
        && meta.owner_references.iter().flatten().any(|r| r.controller == Some(true) && r.uid == controller_uid)
}

/// Who an object belongs to, for a message: its controller, else the Helm release that
/// manages it (Helm's `meta.helm.sh/release-name` annotation), else `no controller`.
pub fn owner_of(meta: &ObjectMeta) -> String {
    if let Some(owner) = meta.owner_references.iter().flatten().find(|r| r.controller == Some(true)) {
        return format!("{} {}", owner.kind, owner.name);
    }
    let helm = meta.annotations.as_ref().and_then(|a| a.get(HELM_RELEASE));
    match helm {
        Some(release) => format!("Helm release {release}"),
        None => "no controller".into(),
    }
}

/// The refusal for a taken name: `what` is the object (e.g. `Service web-api`), `owner` from
/// [`Control::Foreign`], `fix` what the user can change.
pub fn conflict(what: &str, owner: &str, fix: &str) -> Error {
    Error::refused(
        Category::Conflict,
        format!(
            "{what} already exists and belongs to {owner}, not to this object; citystack leaves it untouched: {fix}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn meta(owner: Option<(&str, &str, bool)>, helm: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("a-b-c".into()),
            owner_references: owner.map(|(kind, uid, controller)| {
                vec![OwnerReference {
                    api_version: "citystack.io/v1alpha1".into(),
                    kind: kind.into(),
                    name: "a-b".into(),
                    uid: uid.into(),
                    controller: Some(controller),
                    block_owner_deletion: None,
                }]
            }),
            annotations: helm.map(|r| [(HELM_RELEASE.to_owned(), r.to_owned())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_controller_uid_makes_an_object_ours() {
        let cases = [
            ("absent", None, Control::Absent),
            ("ours", Some(meta(Some(("SolutionStack", "u1", true)), None)), Control::Ours),
            (
                "another stack",
                Some(meta(Some(("SolutionStack", "u2", true)), None)),
                Control::Foreign("SolutionStack a-b".into()),
            ),
            // A namesake stack recreated with a new UID does not inherit the old one's children.
            (
                "same uid, not controller",
                Some(meta(Some(("SolutionStack", "u1", false)), None)),
                Control::Foreign("no controller".into()),
            ),
            ("helm", Some(meta(None, Some("web"))), Control::Foreign("Helm release web".into())),
            ("hand-made", Some(meta(None, None)), Control::Foreign("no controller".into())),
        ];
        for (name, live, want) in cases {
            assert_eq!(control(live.as_ref(), "u1"), want, "{name}");
        }
        assert!(!controls(&meta(Some(("SolutionStack", "", true)), None), ""), "an empty UID matches nothing");
    }

    #[test]
    fn a_conflict_names_the_object_and_its_owner_and_stalls() {
        let error = conflict("Service web-api", "Helm release web", "rename component api");
        assert_eq!(error.category(), Category::Conflict);
        assert!(error.category().stalls());
        let text = error.to_string();
        assert!(
            text.contains("Service web-api") && text.contains("Helm release web") && text.contains("rename"),
            "{text}"
        );
    }
}
