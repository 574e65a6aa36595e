//! The start-up self check: an identity missing a verb the operator uses is reported by name
//! in /readyz and the log.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::harness::{self, DEADLINE, Operator, wait_until};

#[tokio::test]
async fn missing_verb_fails_readyz_by_name() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "rbac", json!({})).await;
    let create = PostParams::default();
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "narrow"}})).unwrap_or_else(|e| panic!("{e}"));
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&create, &account)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Everything the operator needs, except `delete` on Deployments.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "narrow"},
        "rules": [
            {"apiGroups": ["citystack.io"], "resources": ["solutionstacks"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["citystack.io"], "resources": ["solutionstacks/status"], "verbs": ["get", "patch", "update"]},
            {"apiGroups": ["citystack.io"], "resources": ["solutionstacks/finalizers"], "verbs": ["update"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create", "patch"]},
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["citystack.io"], "resources": ["azureresources"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            {"apiGroups": ["citystack.io"], "resources": ["azureresources/status"], "verbs": ["patch"]},
            {"apiGroups": ["citystack.io"], "resources": ["azureresources/finalizers"], "verbs": ["update"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch"]}
        ]
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    Api::<Role>::namespaced(client.clone(), &ns).create(&create, &role).await.unwrap_or_else(|e| panic!("{e}"));
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "narrow"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "narrow"},
        "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": ns}]
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&create, &binding)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Cluster-wide: only the GET of kube-system (the cluster identity), as the chart grants
    // without --trusted-namespaces; the self check must not ask for more.
    let cluster_role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": format!("{ns}-narrow")},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"], "verbs": ["get"]},
            {"apiGroups": ["citystack.io"], "resources": ["solutionblueprints"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["citystack.io"], "resources": ["solutionblueprints/status"], "verbs": ["patch"]}
        ]
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    Api::<ClusterRole>::all(client.clone()).create(&create, &cluster_role).await.unwrap_or_else(|e| panic!("{e}"));
    let cluster_binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{ns}-narrow")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{ns}-narrow")},
        "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": ns}]
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&create, &cluster_binding)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let kubeconfig = harness::service_account_kubeconfig(&client, &ns, "narrow").await;
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let operator = Operator::start_unready(&ns, &["--kubeconfig", &kubeconfig]).await;
    let expected = format!("missing permission: delete deployments.apps in namespace {ns}");
    let body = wait_until("readyz names the missing verb", DEADLINE, || async {
        let (code, body) = operator.readyz().await;
        (code == 503 && body.contains("missing permission")).then_some(body)
    })
    .await;
    assert!(body.contains(&expected), "{body}");
    assert_eq!(body.matches("missing permission").count(), 1, "only the one verb is missing: {body}");
    assert!(operator.log().contains(&expected), "the log names it too:\n{}", operator.log());
    let _ = Api::<ClusterRoleBinding>::all(client.clone()).delete(&format!("{ns}-narrow"), &Default::default()).await;
    let _ = Api::<ClusterRole>::all(client.clone()).delete(&format!("{ns}-narrow"), &Default::default()).await;
    harness::delete_namespace(&client, &ns).await;
}
