//! Secret values never leave the operator (DESIGN §5): a canary planted in every field of
//! credential Secrets (swapped keys included) and in the operator's own identity is driven
//! through the failures it causes, and then looked for in status, Events, the log, /metrics
//! and /readyz.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use citystack::api::AzureResource;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::azure::{CLIENT_ID, SUBSCRIPTION, Sim, TENANT};
use crate::harness::{self, DEADLINE, Operator, wait_until};

/// Letters, digits and hyphens only: azure_identity accepts it as a tenant id, so only the
/// operator's own checks stop it.
const CANARY: &str = "CANARY-5ecret-b7d41e";
/// Shaped like a real client secret.
const CANARY_SECRET: &str = "CANARY-5ecret~Qx8_d.Zp41";

/// Whether `text` holds a canary, whole or in part (URL-encoded echoes keep the prefix).
fn leaks(text: &str) -> bool {
    text.contains("CANARY") || text.contains("5ecret")
}

async fn credential(api: &Api<Secret>, name: &str, data: Value) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    harness::apply(api, &secret).await;
}

/// Status, reason and message of the Ready condition.
fn ready(o: &AzureResource) -> Option<(String, String, String)> {
    let c = o.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The body of `GET path` on the operator's admin server.
async fn admin_get(operator: &Operator, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(operator.admin).await.unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap_or_else(|e| panic!("{e}"));
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_in_credentials_never_reach_status_events_logs_or_metrics() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "canary", json!({})).await;
    let sim = Sim::start(Duration::from_millis(300)).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    // (Secret, data, what the Ready message must say)
    let cases = [
        (
            "tenant-secret-swapped",
            json!({"AZURE_TENANT_ID": CANARY, "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_CLIENT_SECRET": TENANT, "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}),
            "AZURE_TENANT_ID is not a valid tenant id",
        ),
        (
            "tenant-secret-shaped",
            json!({"AZURE_TENANT_ID": CANARY_SECRET, "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_CLIENT_SECRET": TENANT, "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}),
            "AZURE_TENANT_ID is not a valid tenant id",
        ),
        (
            "client-secret-swapped",
            json!({"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CANARY_SECRET, "AZURE_CLIENT_SECRET": CLIENT_ID, "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}),
            "AZURE_CLIENT_ID is not a valid client id",
        ),
        (
            "subscription-canary",
            json!({"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_CLIENT_SECRET": "not-a-secret", "AZURE_SUBSCRIPTION_ID": CANARY}),
            "AZURE_SUBSCRIPTION_ID is not a valid subscription id",
        ),
        (
            // Well formed, but the token endpoint refuses the secret (and may quote the request).
            "wrong-secret",
            json!({"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_CLIENT_SECRET": CANARY_SECRET, "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}),
            "could not get a token",
        ),
    ];
    for (name, data, _) in &cases {
        credential(&secrets, name, data.clone()).await;
    }
    let flags = sim.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let operator = Operator::start_with(&ns, 3, &flags).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    for (name, _, expected) in &cases {
        let object: AzureResource = serde_json::from_value(json!({
            "apiVersion": "citystack.io/v1alpha1", "kind": "AzureResource", "metadata": {"name": name},
            "spec": {"kind": "ResourceGroup", "name": format!("rg-{name}"), "location": "eastus", "credentialRef": {"name": name}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        harness::apply(&api, &object).await;
        let message = wait_until(&format!("{name}: Ready=False saying {expected}"), DEADLINE, || async {
            let (status, _, message) = ready(&api.get(name).await.ok()?)?;
            (status == "False" && message.contains(expected)).then_some(message)
        })
        .await;
        assert!(message.contains(&format!("Secret {ns}/{name}")) || *name == "wrong-secret", "{name}: {message}");
    }
    // Let the failing reconciles retry a few times, so every path has logged and counted.
    tokio::time::sleep(Duration::from_secs(5)).await;

    for object in api.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("{e}")).items {
        let status = serde_json::to_string(&object.status).unwrap_or_default();
        assert!(!leaks(&status), "status of {} holds the canary: {status}", object.metadata.name.unwrap_or_default());
    }
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let events = events.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("{e}")).items;
    assert!(!events.is_empty(), "the failures published Events");
    for event in events {
        let text = serde_json::to_string(&event).unwrap_or_default();
        assert!(!leaks(&text), "an Event holds the canary: {text}");
    }
    let metrics = admin_get(&operator, "/metrics").await;
    assert!(metrics.contains("citystack_reconcile_errors_total"), "{metrics}");
    assert!(!leaks(&metrics), "/metrics holds the canary");
    assert!(!leaks(&admin_get(&operator, "/readyz").await), "/readyz holds the canary");
    let log = operator.log();
    assert!(!log.is_empty());
    assert!(!leaks(&log), "the operator log holds the canary:\n{log}");
    harness::delete_namespace(&client, &ns).await;
}

/// Runs `citystack run` with the operator identity from `env` and returns its exit and
/// everything it printed; the run is expected to stop at start-up.
fn run_refused(ns: &str, flags: &[String], env: &[(&str, &str)]) -> (bool, String) {
    let kubeconfig = harness::kubeconfig();
    let mut child = Command::new(env!("CARGO_BIN_EXE_citystack"))
        .args(["run", "--admin-addr", "127.0.0.1:0", "--namespaces", ns, "--azure-identity", "client-secret"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(flags)
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start operator: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (status.is_some_and(|s| !s.success()), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_in_the_operator_identity_never_reach_its_output() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "canary-id", json!({})).await;
    let sim = Sim::start(Duration::from_millis(300)).await;
    let flags = sim.flags();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("AZURE_TENANT_ID", CANARY), ("AZURE_CLIENT_ID", CLIENT_ID), ("AZURE_CLIENT_SECRET", TENANT)],
            "AZURE_TENANT_ID is not a valid tenant id",
        ),
        (
            &[("AZURE_TENANT_ID", CANARY_SECRET), ("AZURE_CLIENT_ID", CLIENT_ID), ("AZURE_CLIENT_SECRET", TENANT)],
            "AZURE_TENANT_ID is not a valid tenant id",
        ),
        (
            &[("AZURE_TENANT_ID", TENANT), ("AZURE_CLIENT_ID", CANARY_SECRET), ("AZURE_CLIENT_SECRET", CLIENT_ID)],
            "AZURE_CLIENT_ID is not a valid client id",
        ),
    ];
    for (env, expected) in cases {
        let (ns, flags, env) = (ns.clone(), flags.clone(), env.to_vec());
        let (failed, output) =
            tokio::task::spawn_blocking(move || run_refused(&ns, &flags, &env)).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(failed, "the operator started with a malformed identity:\n{output}");
        assert!(output.contains(expected), "expected {expected:?}:\n{output}");
        assert!(!leaks(&output), "the operator's output holds the canary:\n{output}");
    }
    harness::delete_namespace(&client, &ns).await;
}
