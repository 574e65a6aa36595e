//! The Azure side's safety rules (issue 9 §2), each against the real control plane and the ARM
//! simulator: adopted resources are never overwritten, failed and rejected requests are not
//! repeated until the spec changes, an operation URL outside the ARM endpoint is never called,
//! one principal's throttling does not hold back another, stacks report their Azure bindings'
//! Stalled state, and deleting a namespace cleans Azure up before its credential goes.

use std::time::Duration;

use citystack::api::{AzureResource, SolutionStack};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::azure::{
    SUBSCRIPTION, Sim, azr, binding_data, condition, credential_secret, merged, setup, wait_azr, wait_azr_ready,
};
use crate::harness::{self, DEADLINE, Operator, wait_until};

fn group(name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}")
}

/// How many logged requests have `method` and a path ending in `suffix` (case-insensitive).
async fn count(sim: &Sim, method: &str, suffix: &str) -> usize {
    let suffix = suffix.to_ascii_lowercase();
    sim.requests().await.iter().filter(|(m, p)| m == method && p.to_ascii_lowercase().ends_with(&suffix)).count()
}

async fn events(client: &Client, ns: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("{e}"));
    list.items.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).filter_map(|e| e.message).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_never_overwrites_and_defaults_to_orphan() {
    let (client, ns, sim, _operator) = setup("adoptsafe", Duration::from_millis(300), 300).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-adoptsafe", "location": "eastus"})))
        .await;
    wait_azr_ready(&api, "rg").await;
    // Someone else's Premium cache with its own settings and tags.
    let id = format!("{}/providers/Microsoft.Cache/redis/legacy-cache", group("rg-adoptsafe"));
    let theirs = json!({"location": "eastus", "tags": {"team": "city"},
        "properties": {"sku": {"name": "Premium", "family": "P", "capacity": 1}, "enableNonSslPort": true}});
    sim.foreign_put(&id, theirs).await;
    let spec = json!({"kind": "RedisCache", "mode": "Adopt", "name": "legacy-cache", "resourceGroup": "rg-adoptsafe",
        "location": "westeurope", "tags": {"stack": "tourism"}});
    harness::apply(&api, &azr("legacy", spec)).await;
    let adopted = wait_azr_ready(&api, "legacy").await;
    assert_eq!(adopted.status.as_ref().and_then(|s| s.deletion_policy), Some(citystack::api::DeletionPolicy::Orphan));
    assert!(adopted.metadata.finalizers.clone().unwrap_or_default().is_empty(), "an adopted resource is orphaned");
    assert_eq!(count(&sim, "PUT", &id).await, 1, "only the owner's PUT: adopting never PUTs");
    assert!(count(&sim, "PATCH", &id).await >= 1, "the owner tag and spec tags go in a PATCH");
    let body = sim.foreign_get(&id).await;
    assert_eq!(body.pointer("/properties/sku/name"), Some(&json!("Premium")), "{body}");
    assert_eq!(body.pointer("/properties/enableNonSslPort"), Some(&json!(true)), "{body}");
    assert_eq!(body.get("location"), Some(&json!("eastus")), "the spec's location is not written: {body}");
    assert_eq!(body.pointer("/tags/team"), Some(&json!("city")), "{body}");
    assert_eq!(body.pointer("/tags/stack"), Some(&json!("tourism")), "{body}");

    // An adopted PostgreSQL server's password is its owner's: without passwordSecretRef the
    // binding leaves the key out and says so; with it the binding carries that Secret's value.
    let pg_id = format!("{}/providers/Microsoft.DBforPostgreSQL/flexibleServers/legacy-pg", group("rg-adoptsafe"));
    let owners = json!({"location": "eastus", "sku": {"name": "Standard_B1ms", "tier": "Burstable"},
        "properties": {"administratorLogin": "cityadmin", "administratorLoginPassword": "chosen-by-owner", "version": "16"}});
    sim.foreign_put(&pg_id, owners).await;
    let pg_spec = json!({"kind": "PostgreSQLFlexibleServer", "mode": "Adopt", "name": "legacy-pg",
        "resourceGroup": "rg-adoptsafe", "location": "eastus"});
    harness::apply(&api, &azr("legacy-pg", pg_spec.clone())).await;
    let pg = wait_azr_ready(&api, "legacy-pg").await;
    let ready = condition(&pg, "Ready").unwrap_or_default();
    assert!(ready.2.contains("no password"), "{ready:?}");
    let data = binding_data(&client, &ns, &pg).await;
    assert!(!data.contains_key("password"), "a password was made up: {:?}", data.keys());
    assert_eq!(data.get("username").map(String::as_str), Some("cityadmin"));
    let admin: Secret = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "legacy-pg-admin"}, "stringData": {"password": "chosen-by-owner"}}))
    .unwrap_or_else(|e| panic!("{e}"));
    harness::apply(&Api::<Secret>::namespaced(client.clone(), &ns), &admin).await;
    let named = merged(&pg_spec, json!({"passwordSecretRef": {"name": "legacy-pg-admin", "key": "password"}}));
    harness::apply(&api, &azr("legacy-pg", named)).await;
    wait_until("the binding carries the owner's password", DEADLINE, || async {
        let pg = api.get("legacy-pg").await.ok()?;
        let data = binding_data(&client, &ns, &pg).await;
        (data.get("password").map(String::as_str) == Some("chosen-by-owner")).then_some(())
    })
    .await;
    assert_eq!(count(&sim, "PUT", &pg_id).await, 1, "only the owner's PUT: a PUT from citystack could set a password");

    // A name, resource group or subscription cannot change once set: a rename would point the
    // object at another resource.
    let renamed = Patch::Merge(json!({"spec": {"name": "another-cache"}}));
    let refused = api.patch("legacy", &PatchParams::default(), &renamed).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("spec.name cannot be set, changed or removed"), "{message}");
    let moved = Patch::Merge(json!({"spec": {"resourceGroup": "rg-other"}}));
    let message = api.patch("legacy", &PatchParams::default(), &moved).await.err().map(|e| e.to_string());
    assert!(message.unwrap_or_default().contains("spec.resourceGroup cannot"));

    // Deleting the object leaves the adopted cache in Azure.
    api.delete("legacy", &Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    wait_until("legacy gone", DEADLINE, || async { api.get_opt("legacy").await.ok()?.is_none().then_some(()) }).await;
    assert_eq!(count(&sim, "DELETE", &id).await, 0, "Orphan never deletes");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_rejected_requests_wait_for_a_spec_change() {
    let (client, ns, sim, operator) = setup("permanent", Duration::from_millis(300), 2).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-permanent", "location": "eastus"})))
        .await;
    wait_azr_ready(&api, "rg").await;
    let base = json!({"resourceGroup": "rg-permanent", "location": "eastus"});

    // A PUT that ARM rejects (400): Stalled with the ARM code, and not sent again while the
    // spec stays the same, across many resyncs.
    let fault = json!({"method": "PUT", "pathContains": "redis/rejected-cache", "status": 400, "code": "InvalidSkuForRegion", "count": 100});
    sim.admin(reqwest::Method::POST, "/_admin/faults", Some(fault)).await;
    harness::apply(&api, &azr("rejected", merged(&base, json!({"kind": "RedisCache", "name": "rejected-cache"}))))
        .await;
    let stalled = wait_azr(&api, "rejected", "Stalled AzureRejected", |o| {
        condition(o, "Stalled").is_some_and(|c| c.0 == "True" && c.1 == "AzureRejected")
    })
    .await;
    assert!(condition(&stalled, "Stalled").is_some_and(|c| c.2.contains("InvalidSkuForRegion")), "{stalled:?}");
    let reconciles = operator.reconciles().await;
    wait_until("several resyncs", DEADLINE, || async {
        (operator.reconciles().await >= reconciles + 6.0).then_some(())
    })
    .await;
    assert_eq!(count(&sim, "PUT", "redis/rejected-cache").await, 1, "a rejected PUT is not repeated unchanged");

    // A long-running operation that ends Failed: dropped (never polled again), Stalled; a spec
    // change sends a fresh PUT that succeeds.
    let fault = json!({"method": "PUT", "pathContains": "redis/failing-cache", "operation": "Failed", "code": "QuotaExceeded", "count": 1});
    sim.admin(reqwest::Method::POST, "/_admin/faults", Some(fault)).await;
    harness::apply(&api, &azr("failing", merged(&base, json!({"kind": "RedisCache", "name": "failing-cache"})))).await;
    let failed = wait_azr(&api, "failing", "Stalled AzureOperationFailed", |o| {
        condition(o, "Stalled").is_some_and(|c| c.0 == "True" && c.1 == "AzureOperationFailed")
    })
    .await;
    assert!(failed.status.as_ref().is_some_and(|s| s.operation.is_none()), "the failed operation is dropped");
    let puts = count(&sim, "PUT", "redis/failing-cache").await;
    let reconciles = operator.reconciles().await;
    wait_until("more resyncs", DEADLINE, || async { (operator.reconciles().await >= reconciles + 6.0).then_some(()) })
        .await;
    assert_eq!(count(&sim, "PUT", "redis/failing-cache").await, puts, "no PUT until the spec changes");
    let fixed = merged(&base, json!({"kind": "RedisCache", "name": "failing-cache", "tags": {"retry": "1"}}));
    harness::apply(&api, &azr("failing", fixed)).await;
    wait_azr_ready(&api, "failing").await;
    assert!(count(&sim, "PUT", "redis/failing-cache").await > puts, "the spec change sent a fresh PUT");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_url_outside_the_endpoint_is_dropped_unfollowed() {
    let (client, ns, _sim, _operator) = setup("opurl", Duration::from_millis(300), 300).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-opurl", "location": "eastus"}))).await;
    wait_azr_ready(&api, "rg").await;
    // Someone with status access points the operation at another host: the operator must not
    // send its bearer token there; it drops the URL, says so, and reads the resource afresh.
    let status = Patch::Merge(json!({"status": {"operation": "https://collector.example:443/steal?x=1"}}));
    api.patch_status("rg", &PatchParams::default(), &status).await.unwrap_or_else(|e| panic!("{e}"));
    wait_until("OperationDropped Event", DEADLINE, || async {
        let found = events(&client, &ns, "OperationDropped").await;
        found
            .iter()
            .any(|m| m.contains("collector.example") && m.contains("outside the configured ARM endpoint"))
            .then_some(())
    })
    .await;
    let rg =
        wait_azr(&api, "rg", "operation cleared", |o| o.status.as_ref().is_some_and(|s| s.operation.is_none())).await;
    assert!(condition(&rg, "Ready").is_some_and(|c| c.0 == "True"), "{rg:?}");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principals_throttling_does_not_pause_another() {
    let client = harness::client().await;
    let sim = Sim::start(Duration::from_millis(300)).await;
    let other_client = "0b7a3c9e-1d2f-4a5b-8c6d-7e8f9a0b1c2d";
    sim.admin(
        reqwest::Method::POST,
        "/_admin/clients",
        Some(json!({"tenant": "*", "clientId": other_client, "clientSecret": "other-secret"})),
    )
    .await;
    let a = harness::namespace(&client, "tenanta", json!({})).await;
    let b = harness::namespace(&client, "tenantb", json!({})).await;
    credential_secret(&client, &a).await;
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "citystack-azure"},
        "stringData": {"AZURE_TENANT_ID": crate::azure::TENANT, "AZURE_CLIENT_ID": other_client,
                       "AZURE_CLIENT_SECRET": "other-secret", "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    harness::apply(&Api::<Secret>::namespaced(client.clone(), &b), &secret).await;
    // One operator process for both namespaces, as in a cluster: the budget and the pause are
    // shared state inside it.
    let flags = sim.flags();
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // The harness passes `--namespaces <a>`; this adds b.
    flags.extend(["--namespaces", b.as_str()]);
    let _operator = Operator::start_with(&a, 300, &flags).await;
    let in_a: Api<AzureResource> = Api::namespaced(client.clone(), &a);
    let in_b: Api<AzureResource> = Api::namespaced(client.clone(), &b);
    // Tenant A's first call is throttled for ten minutes.
    let fault = json!({"method": "GET", "pathContains": "rg-tenant-a", "status": 429, "retryAfter": 600, "count": 1});
    sim.admin(reqwest::Method::POST, "/_admin/faults", Some(fault)).await;
    harness::apply(&in_a, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-tenant-a", "location": "eastus"})))
        .await;
    wait_azr(&in_a, "rg", "throttled", |o| condition(o, "Ready").is_some_and(|c| c.1 == "AzureThrottled")).await;
    // Same subscription, another principal: not held back.
    harness::apply(&in_b, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-tenant-b", "location": "eastus"})))
        .await;
    wait_azr_ready(&in_b, "rg").await;
    let rg_a = in_a.get("rg").await.unwrap_or_else(|e| panic!("{e}"));
    assert!(condition(&rg_a, "Ready").is_some_and(|c| c.1 == "AzureThrottled"), "A still waits: {rg_a:?}");
    harness::delete_namespace(&client, &a).await;
    harness::delete_namespace(&client, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_azure_binding_stalls_its_stack() {
    let (client, ns, sim, _operator) = setup("stackstall", Duration::from_millis(300), 300).await;
    let fault = json!({"method": "PUT", "pathContains": "Microsoft.Cache/redis/", "status": 400, "code": "InvalidSkuForRegion", "count": 100});
    sim.admin(reqwest::Method::POST, "/_admin/faults", Some(fault)).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let stack = harness::stack(
        r#"
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: portal}
spec:
  azure: {resourceGroup: rg-stackstall, location: eastus}
  components:
    - {name: web, image: registry.example/web:1, replicas: 1}
  bindings:
    - {name: group, azure: {kind: ResourceGroup, name: rg-stackstall}}
    - {name: cache, azure: {kind: RedisCache}}
"#,
    );
    harness::apply(&stacks, &stack).await;
    // No component uses the cache, yet the stack is not Ready without it, and its Stalled
    // state names the binding and the ARM code.
    let stalled = harness::wait_stack(&stacks, "portal", "Stalled by its cache binding", |s| {
        harness::condition(s, "Stalled").is_some_and(|c| {
            c.status == "True"
                && c.reason == "AzureRejected"
                && c.message.contains("binding cache")
                && c.message.contains("InvalidSkuForRegion")
        })
    })
    .await;
    assert!(harness::condition(&stalled, "Ready").is_some_and(|c| c.status == "False"));
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_cleans_azure_before_the_credential_goes() {
    let (client, ns, sim, _operator) = setup("nsdelete", Duration::from_millis(300), 300).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-nsdelete", "location": "eastus"})))
        .await;
    wait_azr_ready(&api, "rg").await;
    let spec =
        json!({"kind": "RedisCache", "name": "nsdelete-cache", "resourceGroup": "rg-nsdelete", "location": "eastus"});
    harness::apply(&api, &azr("cache", spec)).await;
    wait_azr_ready(&api, "cache").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let held = secrets.get("citystack-azure").await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        held.metadata.finalizers.unwrap_or_default().iter().any(|f| f == "citystack.io/credential-in-use"),
        "the Delete-policy cache holds its credential"
    );
    // A second one that a person abandons: left in Azure, finalizer removed, an Event says so.
    let spec =
        json!({"kind": "RedisCache", "name": "nsdelete-kept", "resourceGroup": "rg-nsdelete", "location": "eastus"});
    harness::apply(&api, &azr("kept", spec)).await;
    wait_azr_ready(&api, "kept").await;
    let abandon = Patch::Merge(json!({"metadata": {"annotations": {"citystack.io/abandon": "true"}}}));
    api.patch("kept", &PatchParams::default(), &abandon).await.unwrap_or_else(|e| panic!("{e}"));

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.delete(&ns, &Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    wait_until("the namespace is gone", DEADLINE, || async {
        namespaces.get_opt(&ns).await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(count(&sim, "DELETE", "redis/nsdelete-cache").await, 1, "the cache was deleted in Azure first");
    assert_eq!(count(&sim, "DELETE", "redis/nsdelete-kept").await, 0, "the abandoned cache stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_vault_gets_the_credentials_tenant() {
    let (client, ns, sim, _operator) = setup("vault", Duration::from_millis(300), 300).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-vault", "location": "eastus"}))).await;
    wait_azr_ready(&api, "rg").await;
    let spec = json!({"kind": "KeyVault", "name": "cityvault-1", "resourceGroup": "rg-vault", "location": "eastus"});
    harness::apply(&api, &azr("vault", spec)).await;
    wait_azr_ready(&api, "vault").await;
    let vault =
        sim.foreign_get(&format!("{}/providers/Microsoft.KeyVault/vaults/cityvault-1", group("rg-vault"))).await;
    assert_eq!(vault.pointer("/properties/tenantId"), Some(&json!(crate::azure::TENANT)), "{vault}");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_survives_every_untrusted_answer() {
    let (client, ns, sim, operator) = setup("faults", Duration::from_millis(300), 300).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-faults", "location": "eastus"}))).await;
    wait_azr_ready(&api, "rg").await;
    // One cache per fault; each fault hits that cache's first matching request only.
    let faults = [
        ("zero", json!({"method": "GET", "status": 503, "retryAfterRaw": "0"})),
        ("dated", json!({"method": "GET", "status": 429, "retryAfterRaw": "Wed, 21 Oct 2015 07:28:00 GMT"})),
        ("garbage", json!({"method": "GET", "status": 429, "retryAfterRaw": "-1"})),
        ("big", json!({"method": "GET", "bodyBytes": 9_437_184})),
        ("html", json!({"method": "GET", "bodyRaw": "<html>502 Bad Gateway</html>"})),
        (
            "shapes",
            json!({"method": "GET", "bodyPatch": {"properties": {"provisioningState": 7}, "tags": "not-an-object", "id": null}}),
        ),
        ("array", json!({"method": "POST", "bodyJson": ["not", "keys"]})),
        ("elsewhere", json!({"method": "PUT", "operationHost": "attacker.example:8443"})),
        (
            "metadata",
            json!({"method": "PUT", "location": "http://169.254.169.254/latest", "asyncOperation": "https://evil.example/steal"}),
        ),
    ];
    for (name, fault) in &faults {
        let mut fault = fault.clone();
        fault["pathContains"] = json!(format!("redis/faults-{name}"));
        let armed = sim.admin(reqwest::Method::POST, "/_admin/faults", Some(fault)).await;
        assert!(armed.get("id").is_some(), "fault for {name} not armed: {armed}");
        let spec = json!({"kind": "RedisCache", "name": format!("faults-{name}"), "resourceGroup": "rg-faults", "location": "eastus"});
        harness::apply(&api, &azr(name, spec)).await;
    }
    // Every object converges once its fault has passed, and the process never exits.
    for (name, _) in &faults {
        wait_azr_ready(&api, name).await;
        assert_eq!(operator.readyz().await.0, 200, "the operator is still serving after {name}");
    }
    let requests = sim.requests().await;
    assert!(
        !requests.iter().any(|(_, p)| p.contains("steal") || p.contains("latest")),
        "an untrusted operation URL was followed"
    );
    // The value that used to overflow and exit the process: capped to 15 minutes. (It pauses
    // this subscription and principal, so it comes last.)
    let fault = json!({"method": "GET", "pathContains": "redis/faults-huge", "status": 429, "retryAfterRaw": "18446744073709551615"});
    sim.admin(reqwest::Method::POST, "/_admin/faults", Some(fault)).await;
    let spec = json!({"kind": "RedisCache", "name": "faults-huge", "resourceGroup": "rg-faults", "location": "eastus"});
    harness::apply(&api, &azr("huge", spec)).await;
    // The wait counts down from the cap (a later reconcile reports what is left of it).
    let capped = |message: &str| {
        let seconds = message.split("retrying in ").nth(1).and_then(|rest| rest.strip_suffix('s'));
        seconds.and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| (600..=900).contains(&s))
    };
    let huge = wait_azr(&api, "huge", "throttled for the capped wait", |o| {
        condition(o, "Ready").is_some_and(|c| c.1 == "AzureThrottled" && capped(&c.2))
    })
    .await;
    assert_eq!(operator.readyz().await.0, 200, "the operator is still serving: {huge:?}");
    assert!(!operator.log().contains("panicked"), "a panic in the operator log");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_deletion_reads_every_page() {
    let (client, ns, sim, _operator) = setup("pages", Duration::from_millis(300), 300).await;
    sim.admin(reqwest::Method::PUT, "/_admin/settings", Some(json!({"pageSize": 2}))).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    let spec = json!({"kind": "ResourceGroup", "name": "rg-pages", "location": "eastus", "deletionPolicy": "Delete"});
    harness::apply(&api, &azr("rg", spec)).await;
    wait_azr_ready(&api, "rg").await;
    // Five resources nobody owns: with two per page, the last one is on page three.
    for i in 0..5 {
        let id = format!("{}/providers/Microsoft.Web/sites/page-site-{i}", group("rg-pages"));
        sim.foreign_put(&id, json!({"location": "eastus", "properties": {}})).await;
    }
    api.delete("rg", &Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let blocked = wait_azr(&api, "rg", "blocked naming five", |o| {
        condition(o, "Stalled").is_some_and(|c| c.0 == "True" && c.2.contains("5 resource(s)"))
    })
    .await;
    assert!(condition(&blocked, "Stalled").is_some_and(|c| c.2.contains("page-site-4")), "{blocked:?}");
    assert_eq!(count(&sim, "DELETE", "resourceGroups/rg-pages").await, 0);
    for i in 0..5 {
        let id = format!("{}/providers/Microsoft.Web/sites/page-site-{i}", group("rg-pages"));
        sim.admin(reqwest::Method::DELETE, &format!("/_admin/resources?id={id}"), None).await;
    }
    wait_until("the group's deletion completes", DEADLINE, || async {
        api.get_opt("rg").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(count(&sim, "DELETE", "resourceGroups/rg-pages").await, 1);
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_secret_name_held_by_another_owner_is_left_alone() {
    let (client, ns, _sim, _operator) = setup("bindname", Duration::from_millis(300), 300).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    // Someone's own Secret with the name `<azureresource>-binding`, holding their password.
    let theirs: Secret = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cache-binding"}, "stringData": {"password": "theirs"}}))
    .unwrap_or_else(|e| panic!("{e}"));
    let theirs = harness::apply(&secrets, &theirs).await;
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-bindname", "location": "eastus"})))
        .await;
    wait_azr_ready(&api, "rg").await;
    let spec =
        json!({"kind": "RedisCache", "name": "bindname-cache", "resourceGroup": "rg-bindname", "location": "eastus"});
    harness::apply(&api, &azr("cache", spec)).await;
    let cache = wait_azr(&api, "cache", "Stalled with reason Conflict", |o| {
        condition(o, "Stalled").is_some_and(|c| c.0 == "True" && c.1 == "Conflict")
    })
    .await;
    let message = condition(&cache, "Stalled").map(|c| c.2).unwrap_or_default();
    assert!(message.contains("Secret cache-binding") && message.contains("no controller"), "{message}");
    assert!(!message.contains("theirs"), "a value in the message");
    let now = secrets.get("cache-binding").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(now.resource_version(), theirs.resource_version(), "their Secret was written");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_annotation_reads_azure_at_once() {
    // A resync far beyond the test's deadline: only the annotation can bring the new key.
    let (client, ns, sim, _operator) = setup("refresh", Duration::from_millis(300), 3600).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-refresh", "location": "eastus"})))
        .await;
    wait_azr_ready(&api, "rg").await;
    let spec =
        json!({"kind": "RedisCache", "name": "refresh-cache", "resourceGroup": "rg-refresh", "location": "eastus"});
    harness::apply(&api, &azr("cache", spec)).await;
    let cache = wait_azr_ready(&api, "cache").await;
    let before = binding_data(&client, &ns, &cache).await.get("password").cloned();
    let id = cache.status.as_ref().and_then(|s| s.resource_id.clone()).unwrap_or_default();
    sim.admin(reqwest::Method::POST, "/_admin/regenerate", Some(json!({"resourceId": id}))).await;
    let refresh = Patch::Merge(json!({"metadata": {"annotations": {citystack::naming::REFRESH_ANNOTATION: "1"}}}));
    api.patch("cache", &PatchParams::default(), &refresh).await.unwrap_or_else(|e| panic!("{e}"));
    wait_until("the rotated key reaches the binding Secret", DEADLINE, || async {
        let cache = api.get("cache").await.ok()?;
        let now = binding_data(&client, &ns, &cache).await.get("password").cloned();
        (now.is_some() && now != before).then_some(())
    })
    .await;
    harness::delete_namespace(&client, &ns).await;
}
