//! GitOps health across a stack's life, judged on live objects by the libraries the GitOps
//! tools use: kstatus (sigs.k8s.io/cli-utils, as Flux) and our Argo CD Lua health check run
//! in gopher-lua (as Argo CD), through the Go helper in hack/health.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use citystack::api::SolutionStack;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};

use crate::harness::{self, Operator, condition, wait_ready, wait_stack};

/// (kstatus status, Argo CD status) of an object.
fn judge(object: &SolutionStack) -> (String, String) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let argocd = repo.join("hack/argocd");
    let mut command = match std::env::var_os("CITYSTACK_HEALTH_BIN") {
        Some(bin) => Command::new(bin),
        None => {
            // Without the prebuilt helper (make test builds it), run it from source.
            let mut go = Command::new("go");
            go.args(["-C", "hack/health", "run", "./cmd/kstatus"])
                .current_dir(&repo)
                .env("GOWORK", "off")
                .env("GOTOOLCHAIN", "local");
            go
        }
    };
    let mut child = command
        .arg("-argocd")
        .arg(&argocd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run the kstatus helper: {e}"));
    let input = serde_json::to_vec(object).unwrap_or_default();
    child.stdin.take().map(|mut stdin| stdin.write_all(&input)).transpose().unwrap_or_else(|e| panic!("{e}"));
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(output.status.success(), "kstatus helper failed: {}", String::from_utf8_lossy(&output.stderr));
    let verdict: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("kstatus helper output: {e}"));
    let field = |p: &str| verdict.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
    (field("/status"), field("/argo/status"))
}

fn reason(stack: &SolutionStack) -> String {
    condition(stack, "Ready").map(|c| c.reason.clone()).unwrap_or_default()
}

#[tokio::test]
async fn kstatus_and_argocd_agree_with_ready_across_a_life() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "gitops", json!({})).await;
    let _operator = Operator::start(&ns, 300).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut stack = harness::stack(
        r#"
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: tour}
spec:
  components:
    - {name: api, image: registry.example/api:1, replicas: 1, uses: [db]}
    - {name: map, image: registry.example/map:1, replicas: 1, nodeSelector: {citystack.io/test: nowhere}}
  bindings:
    - {name: db, secretRef: {name: tour-db}}
"#,
    );
    let mut seen = Vec::new();

    // Waiting for a binding, and rolling out (map cannot schedule): InProgress / Progressing.
    harness::apply(&stacks, &stack).await;
    let waiting = wait_stack(&stacks, "tour", "waiting for the binding", |s| reason(s) == "MissingReference").await;
    seen.push(("waiting for a binding", judge(&waiting)));
    let secret: Secret = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tour-db"}, "stringData": {"host": "db"}}),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    harness::apply(&secrets, &secret).await;
    let rolling = wait_stack(&stacks, "tour", "rolling out", |s| reason(s) == "RollingOut").await;
    seen.push(("rolling out", judge(&rolling)));

    // Ready at the current generation: Current / Healthy.
    stack.spec.components[1].node_selector.clear();
    harness::apply(&stacks, &stack).await;
    let ready = wait_ready(&stacks, "tour").await;
    seen.push(("ready", judge(&ready)));

    // A dependency cycle: Stalled, so Failed / Degraded.
    let mut cyclic = stack.clone();
    cyclic.spec.components[0].depends_on = vec!["map".into()];
    cyclic.spec.components[1].depends_on = vec!["api".into()];
    harness::apply(&stacks, &cyclic).await;
    let stalled =
        wait_stack(&stacks, "tour", "stalled", |s| condition(s, "Stalled").is_some_and(|c| c.status == "True")).await;
    seen.push(("stalled", judge(&stalled)));

    // Paused (and otherwise healthy): Argo CD shows Suspended.
    let mut paused = stack.clone();
    paused.spec.paused = true;
    harness::apply(&stacks, &paused).await;
    let suspended = wait_stack(&stacks, "tour", "paused", |s| condition(s, "Paused").is_some()).await;
    seen.push(("paused", judge(&suspended)));

    let expected = [
        ("waiting for a binding", ("InProgress", "Progressing")),
        ("rolling out", ("InProgress", "Progressing")),
        ("ready", ("Current", "Healthy")),
        ("stalled", ("Failed", "Degraded")),
        ("paused", ("Current", "Suspended")),
    ];
    let actual: Vec<(&str, (&str, &str))> = seen.iter().map(|(s, (k, a))| (*s, (k.as_str(), a.as_str()))).collect();
    assert_eq!(actual, expected);
    harness::delete_namespace(&client, &ns).await;
}
