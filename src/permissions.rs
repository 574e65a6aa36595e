//! Start-up self check: does this identity hold every permission the operator uses? Each is
//! asked with a SelfSubjectAccessReview (authorization.k8s.io/v1), so the answer comes from
//! the cluster's real authorizer (RBAC, webhooks), not from reading Roles. A missing verb is
//! logged by name and keeps `/readyz` failing, instead of surfacing later as a 403 deep in a
//! reconcile.

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::Client;
use kube::api::{Api, PostParams};

/// One permission the operator needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Resource plural.
    pub resource: &'static str,
    /// Subresource, e.g. `status`.
    pub subresource: &'static str,
    /// Verb, e.g. `patch`.
    pub verb: &'static str,
    /// The one object the verb is needed on (RBAC `resourceNames`); `None`: any.
    pub name: Option<&'static str>,
    /// Namespace (`None`: all namespaces).
    pub namespace: Option<String>,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { String::new() } else { format!(".{}", self.group) };
        let sub = if self.subresource.is_empty() { String::new() } else { format!("/{}", self.subresource) };
        let name = self.name.map(|n| format!(" named {n}")).unwrap_or_default();
        let scope =
            self.namespace.as_deref().map(|n| format!("namespace {n}")).unwrap_or_else(|| "all namespaces".into());
        write!(f, "{} {}{group}{sub}{name} in {scope}", self.verb, self.resource)
    }
}

/// What the controllers do in each watched namespace (`None`: all), SolutionBlueprints
/// (cluster-scoped: read, and their status written), the Lease verbs in the
/// lease namespace when leader election is on, the GET of Namespace `kube-system` (the
/// cluster identity, [`crate::cluster`]) and, only when `trusted_namespaces` (the operator's
/// identity may be used in namespaces a label selector picks), the Namespace list that
/// evaluates that selector. Server-side apply of a new object needs `create` besides `patch`;
/// `blockOwnerDeletion` on ownerReferences needs `update` on the owner's `finalizers`
/// subresource.
pub fn required(
    namespaces: &[Option<String>],
    lease_namespace: Option<&str>,
    trusted_namespaces: bool,
) -> Vec<Permission> {
    const WATCHED: &[(&str, &str, &str, &[&str])] = &[
        ("citystack.io", "solutionstacks", "", &["get", "list", "watch", "patch"]),
        ("citystack.io", "solutionstacks", "status", &["patch"]),
        ("citystack.io", "solutionstacks", "finalizers", &["update"]),
        ("apps", "deployments", "", &["get", "list", "watch", "create", "patch", "delete"]),
        ("", "services", "", &["get", "list", "watch", "create", "patch", "delete"]),
        ("", "secrets", "", &["get", "list", "watch"]),
        ("events.k8s.io", "events", "", &["create", "patch"]),
        ("citystack.io", "azureresources", "", &["get", "list", "watch", "create", "patch", "delete"]),
        ("citystack.io", "azureresources", "status", &["patch"]),
        ("citystack.io", "azureresources", "finalizers", &["update"]),
        // Binding Secrets of AzureResources.
        ("", "secrets", "", &["create", "patch"]),
    ];
    let mut out = Vec::new();
    for namespace in namespaces {
        for (group, resource, subresource, verbs) in WATCHED {
            for verb in *verbs {
                out.push(Permission { group, resource, subresource, verb, name: None, namespace: namespace.clone() });
            }
        }
    }
    out.push(Permission {
        group: "",
        resource: "namespaces",
        subresource: "",
        verb: "get",
        name: Some(crate::cluster::NAMESPACE),
        namespace: None,
    });
    for (subresource, verbs) in [("", &["get", "list", "watch"][..]), ("status", &["patch"][..])] {
        for verb in verbs {
            let resource = "solutionblueprints";
            out.push(Permission { group: "citystack.io", resource, subresource, verb, name: None, namespace: None });
        }
    }
    if trusted_namespaces {
        out.push(Permission {
            group: "",
            resource: "namespaces",
            subresource: "",
            verb: "list",
            name: None,
            namespace: None,
        });
    }
    if let Some(ns) = lease_namespace {
        for verb in ["get", "list", "watch", "create", "patch"] {
            out.push(Permission {
                group: "coordination.k8s.io",
                resource: "leases",
                subresource: "",
                verb,
                name: None,
                namespace: Some(ns.to_owned()),
            });
        }
    }
    out
}

/// Asks the API server about each permission; returns those denied, described by name.
///
/// Errors: a review request that fails (e.g. this identity may not create
/// SelfSubjectAccessReviews) is reported as a description too, so nothing is hidden.
pub async fn missing(client: &Client, permissions: &[Permission]) -> Vec<String> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    for p in permissions {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(p.group.into()),
                    resource: Some(p.resource.into()),
                    subresource: (!p.subresource.is_empty()).then(|| p.subresource.into()),
                    verb: Some(p.verb.into()),
                    name: p.name.map(Into::into),
                    namespace: p.namespace.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => denied.push(format!("missing permission: {p}")),
            Err(error) => denied.push(format!("cannot check permission {p}: {error}")),
        }
    }
    denied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_verb_per_namespace_and_leases_once() {
        let all = required(&[Some("a".into()), Some("b".into())], Some("ops"), false);
        let per_namespace = all.iter().filter(|p| p.namespace.as_deref() == Some("a")).count();
        assert_eq!(all.iter().filter(|p| p.namespace.as_deref() == Some("b")).count(), per_namespace);
        assert_eq!(all.iter().filter(|p| p.resource == "leases").count(), 5);
        let status = Permission {
            group: "citystack.io",
            resource: "solutionstacks",
            subresource: "status",
            verb: "patch",
            name: None,
            namespace: Some("a".into()),
        };
        assert!(all.contains(&status));
        assert_eq!(status.to_string(), "patch solutionstacks.citystack.io/status in namespace a");
    }

    #[test]
    fn namespaces_are_read_only_as_far_as_needed() {
        let namespaces = |trusted| {
            required(&[None], None, trusted)
                .into_iter()
                .filter(|p| p.resource == "namespaces")
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        // Without --trusted-namespaces only kube-system is read (the cluster identity).
        assert_eq!(namespaces(false), ["get namespaces named kube-system in all namespaces"]);
        assert_eq!(
            namespaces(true),
            ["get namespaces named kube-system in all namespaces", "list namespaces in all namespaces"]
        );
    }
}
