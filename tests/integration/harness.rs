//! Shared helpers: the test cluster's client, a namespace per test, the operator as a child
//! process scoped to that namespace, and waits with deadlines.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use citystack::api::SolutionStack;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResourceExt, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Namespace for Lease objects of tests with leader election: `CITYSTACK_LEASE_NAMESPACE`
/// (where the Helm chart lets the operator write Leases) or else the test's own namespace.
pub fn lease_namespace(test_namespace: &str) -> String {
    std::env::var("CITYSTACK_LEASE_NAMESPACE").unwrap_or_else(|_| test_namespace.to_owned())
}

/// Default deadline of a wait.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// Path of the test cluster's kubeconfig: `CITYSTACK_TEST_KUBECONFIG`, else `.local/kubeconfig`.
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("CITYSTACK_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/kubeconfig"))
}

/// A client for the test cluster, with the CRDs installed and Established.
pub async fn client() -> Client {
    citystack::run::install_crypto_provider();
    let path = kubeconfig();
    let file = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("no test cluster kubeconfig at {}: {e} (run `make test`)", path.display()));
    let config =
        Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let client = Client::try_from(config).unwrap_or_else(|e| panic!("{e}"));
    install_crds(&client).await;
    client
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [SolutionStack::crd(), citystack::api::AzureResource::crd(), citystack::api::SolutionBlueprint::crd()] {
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("citystack-tests").force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("install CRD: {e}"));
        wait_until("CRD Established", DEADLINE, || async {
            let crd = crds.get(&name).await.ok()?;
            let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await;
    }
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `deadline`.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Creates a fresh namespace `it-<prefix>-<pid>-<n>` with `labels`.
pub async fn namespace(client: &Client, prefix: &str, labels: serde_json::Value) -> String {
    let name = format!("it-{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap_or_else(|e| panic!("{e}"));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace: {e}"));
    name
}

/// Deletes a namespace (the end of a test; failures are ignored).
pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone()).delete(name, &DeleteParams::default()).await;
}

/// Parses a SolutionStack from YAML.
pub fn stack(yaml: &str) -> SolutionStack {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("test stack YAML: {e}"))
}

/// Server-side applies `object` (any kind) with the test field manager.
pub async fn apply<K>(api: &Api<K>, object: &K) -> K
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(&object.name_any(), &PatchParams::apply("citystack-tests").force(), &Patch::Apply(object))
        .await
        .unwrap_or_else(|e| panic!("apply {}: {e}", object.name_any()))
}

/// Waits until the stack's status describes its current generation with Ready=True.
pub async fn wait_ready(api: &Api<SolutionStack>, name: &str) -> SolutionStack {
    wait_stack(api, name, "Ready=True at the current generation", |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await
}

/// Waits until the stack's status describes its current generation and `check` holds.
pub async fn wait_stack(
    api: &Api<SolutionStack>,
    name: &str,
    what: &str,
    check: impl Fn(&SolutionStack) -> bool,
) -> SolutionStack {
    let description = format!("stack {name}: {what}");
    let mut last = None;
    let result = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(stack) = api.get(name).await {
                let current = stack.status.as_ref().and_then(|s| s.observed_generation) == stack.metadata.generation;
                if current && check(&stack) {
                    return stack;
                }
                last = stack.status.clone();
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    })
    .await;
    result.unwrap_or_else(|_| panic!("timed out waiting for {description}; last status: {last:#?}"))
}

/// The condition of `type_` in the stack's status.
pub fn condition<'a>(
    stack: &'a SolutionStack,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    stack.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// The operator, as a child process watching one namespace, with its admin server on a free
/// loopback port. Killed on drop; its log is printed if the test panicked.
pub struct Operator {
    child: Child,
    /// Address of the admin server.
    pub admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Operator {
    /// Starts `citystack run` for `namespace`, with `--resync` seconds, and waits for /readyz.
    pub async fn start(namespace: &str, resync_seconds: u64) -> Operator {
        Self::start_with(namespace, resync_seconds, &[]).await
    }

    /// Like [`Operator::start`], with extra flags. A `--kubeconfig` among them replaces the
    /// default one (the operator's identity: `CITYSTACK_OPERATOR_KUBECONFIG`, e.g. the Helm
    /// chart's ServiceAccount, else the test cluster's admin).
    pub async fn start_with(namespace: &str, resync_seconds: u64, extra: &[&str]) -> Operator {
        Self::start_with_env(namespace, resync_seconds, extra, &[]).await
    }

    /// Like [`Operator::start_with`], with extra environment variables.
    pub async fn start_with_env(
        namespace: &str,
        resync_seconds: u64,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let mut operator = Self::spawn(namespace, resync_seconds, extra, env).await;
        let start = Instant::now();
        loop {
            if operator.readyz().await.0 == 200 {
                return operator;
            }
            if let Ok(Some(exit)) = operator.child.try_wait() {
                panic!("operator exited with {exit}");
            }
            // The operator's log is printed by Drop when this panics.
            assert!(start.elapsed() < DEADLINE, "timed out waiting for operator /readyz");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Starts the operator without waiting for /readyz (for tests of an unready operator).
    pub async fn start_unready(namespace: &str, extra: &[&str]) -> Operator {
        Self::spawn(namespace, 300, extra, &[]).await
    }

    async fn spawn(namespace: &str, resync_seconds: u64, extra: &[&str], env: &[(&str, &str)]) -> Operator {
        let identity = std::env::var_os("CITYSTACK_OPERATOR_KUBECONFIG").map(PathBuf::from).unwrap_or_else(kubeconfig);
        let default_kubeconfig =
            (!extra.contains(&"--kubeconfig")).then(|| vec!["--kubeconfig".into(), identity.into_os_string()]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_citystack"))
            .args(["run", "--admin-addr", "127.0.0.1:0", "--namespaces", namespace])
            .args(default_kubeconfig.unwrap_or_default())
            .args(["--resync", &resync_seconds.to_string(), "--azure-resync", &resync_seconds.to_string()])
            .args(extra)
            .env("RUST_LOG", "info,citystack=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start operator: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("admin server listening on ").nth(1) {
                    let addr: String = addr.chars().take_while(|c| !c.is_whitespace()).collect();
                    let _ = tx.send(addr);
                }
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        });
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|_| panic!("operator did not report its admin address"));
        let admin: SocketAddr = addr
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or_else(|e| panic!("admin address {addr}: {e}"));
        Operator { child, admin, log }
    }

    /// Status code and body of `/readyz` (0 when unreachable).
    pub async fn readyz(&self) -> (u16, String) {
        self.get("/readyz").await.unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(self.admin).await.ok()?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Some((code, body))
    }

    /// Sum of the samples of `metric` whose labels contain every `labels` pair.
    pub async fn metric(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = self.get("/metrics").await.unwrap_or_else(|| panic!("scrape /metrics"));
        sum(&text, metric, labels)
    }

    /// Write requests (create, update, patch, delete) this operator sent to the API server,
    /// except Lease renewals (leader election) and SelfSubjectAccessReviews (the start-up
    /// permission check: POSTs that store nothing). From one scrape, so a Lease renewal
    /// between two reads cannot skew the difference.
    pub async fn writes(&self) -> f64 {
        let (_, text) = self.get("/metrics").await.unwrap_or_else(|| panic!("scrape /metrics"));
        let mut total = 0.0;
        for verb in ["create", "update", "patch", "delete"] {
            total += sum(&text, "citystack_kube_requests_total", &[("verb", verb)]);
            for exempt in ["leases", "selfsubjectaccessreviews"] {
                total -= sum(&text, "citystack_kube_requests_total", &[("verb", verb), ("resource", exempt)]);
            }
        }
        total
    }

    /// Whether this operator reports itself leader (`citystack_leader`).
    pub async fn is_leader(&self) -> bool {
        self.metric("citystack_leader", &[]).await == 1.0
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns its exit success.
    pub async fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Kills the process at once (SIGKILL): a crashed leader.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Reconciles this operator started.
    pub async fn reconciles(&self) -> f64 {
        self.metric("citystack_reconciles_total", &[]).await
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- operator log ----\n{}\n----", self.log());
        }
    }
}

/// Writes a kubeconfig that authenticates as ServiceAccount `ns/name` (a token from the
/// TokenRequest API, valid one hour) against the test cluster, and returns its path. An
/// operator started with it is authorised exactly as it would be in a Pod.
pub async fn service_account_kubeconfig(client: &Client, ns: &str, name: &str) -> PathBuf {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("token for {ns}/{name}: {e}"))
        .status
        .map(|s| s.token)
        .unwrap_or_else(|| panic!("no token for {ns}/{name}"));
    let admin: serde_json::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(kubeconfig()).unwrap_or_default())
        .unwrap_or_else(|e| panic!("admin kubeconfig: {e}"));
    let cluster =
        admin.pointer("/clusters/0/cluster").cloned().unwrap_or_else(|| panic!("admin kubeconfig has no cluster"));
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": name, "namespace": ns}}],
        "current-context": "sa",
    });
    let path = std::env::temp_dir().join(format!("citystack-{ns}-{name}.kubeconfig"));
    std::fs::write(&path, serde_yaml_ng::to_string(&config).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Sum of the samples of `metric` in a Prometheus text exposition whose labels contain every
/// `labels` pair.
fn sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
