//! Tracing setup, Prometheus metrics, and the admin server (`/metrics`, `/livez`, `/readyz`).
//!
//! Metric label values come from bounded sets only (controller, error category, HTTP verb,
//! child kind, outcome), never from object names, so cardinality cannot grow with the fleet.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tower::{Layer, Service};
use tracing::info;

use crate::error::Category;

/// Log output format (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with span fields (e.g. the object reference).
    Json,
}

/// Installs the global tracing subscriber. The filter comes from `RUST_LOG`, default `info`.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime::controller=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    // A second init (tests start several operators in one process) is not an error.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
    resource: &'static str,
}

/// Resources the operator talks to; anything else is counted as `other` (bounded labels).
const RESOURCES: [&str; 9] = [
    "solutionstacks",
    "deployments",
    "services",
    "secrets",
    "events",
    "leases",
    "namespaces",
    "selfsubjectaccessreviews",
    "customresourcedefinitions",
];

/// The resource (plural) a request path addresses, from the fixed set [`RESOURCES`].
fn resource_of(path: &str) -> &'static str {
    // /api/v1/namespaces/ns/secrets/name, /apis/g/v/namespaces/ns/plural/name/status, /apis/g/v/plural
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.iter().position(|s| *s == "namespaces") {
        Some(i) if segments.len() > i + 2 => &segments[i + 2..],
        Some(i) => &segments[i..],
        None => segments.get(if segments.first() == Some(&"api") { 2 } else { 3 }..).unwrap_or_default(),
    };
    rest.first().and_then(|r| RESOURCES.iter().find(|k| *k == r)).copied().unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApplyLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// The operator's metrics. Cheap to clone (shared counters).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    kube_requests: Family<VerbLabels, Counter>,
    applies: Family<ApplyLabels, Counter>,
    leader: Gauge,
    in_flight: Family<ControllerLabels, Gauge>,
    arm_requests: Family<ArmLabels, Counter>,
    arm_headroom: Family<HeadroomLabels, Gauge>,
    events_dropped: Counter,
    heap_allocated: Gauge,
    heap_resident: Gauge,
}

/// The allocator's own figures, bytes: what the program holds (`allocated`) and the
/// physical memory the allocator keeps for it (`resident`, including freed pages not yet
/// returned). RSS minus `resident` is code, stacks and memory outside the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heap {
    /// Bytes in live allocations.
    pub allocated: u64,
    /// Bytes of physical memory in the allocator's pages.
    pub resident: u64,
}

/// Reads the allocator's figures; `None` when it cannot.
pub type HeapProbe = fn() -> Option<Heap>;

static HEAP_PROBE: std::sync::OnceLock<HeapProbe> = std::sync::OnceLock::new();

/// Installs the probe behind `citystack_heap_*_bytes` (the binary does, for the allocator it
/// links). Only the first call counts; without one the gauges stay 0.
pub fn set_heap_probe(probe: HeapProbe) {
    let _ = HEAP_PROBE.set(probe);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmLabels {
    method: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HeadroomLabels {
    kind: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (prefix `citystack_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("citystack");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        let kube_requests = Family::<VerbLabels, Counter>::default();
        let applies = Family::<ApplyLabels, Counter>::default();
        registry.register("reconciles", "Reconciles started, by controller", reconciles.clone());
        registry.register("reconcile_errors", "Failed reconciles, by controller and error category", errors.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration in seconds, by controller",
            duration.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests sent to the Kubernetes API, by verb (get includes list; watch separate) and resource",
            kube_requests.clone(),
        );
        let in_flight = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now, by controller (at most twice --concurrency per watched namespace: first reconciles and the ones that follow)",
            in_flight.clone(),
        );
        let arm_requests = Family::<ArmLabels, Counter>::default();
        registry.register(
            "arm_requests",
            "Requests sent to Azure Resource Manager, by method and HTTP status",
            arm_requests.clone(),
        );
        let arm_headroom = Family::<HeadroomLabels, Gauge>::default();
        registry.register(
            "arm_ratelimit_remaining",
            "Last x-ms-ratelimit-remaining-subscription-{reads,writes} ARM reported",
            arm_headroom.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this instance may write (holds the lease, or election is off)",
            leader.clone(),
        );
        registry.register(
            "child_applies",
            "Desired children by kind and outcome (applied: server-side apply sent; skipped: already converged)",
            applies.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Events not published because the queue of Events waiting to be sent was full (events::QUEUE)",
            events_dropped.clone(),
        );
        let (heap_allocated, heap_resident) = (Gauge::default(), Gauge::default());
        registry.register("heap_allocated_bytes", "Bytes in live heap allocations", heap_allocated.clone());
        registry.register(
            "heap_resident_bytes",
            "Bytes of physical memory in the allocator's pages (live data, fragmentation, freed pages not yet returned)",
            heap_resident.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconciles,
            errors,
            duration,
            kube_requests,
            applies,
            leader,
            in_flight,
            arm_requests,
            arm_headroom,
            events_dropped,
            heap_allocated,
            heap_resident,
        }
    }

    /// Counts an Event dropped because the send queue was full.
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Counts a reconcile start.
    pub fn reconcile_started(&self, controller: &'static str) {
        self.reconciles.get_or_create(&ControllerLabels { controller }).inc();
        self.in_flight.get_or_create(&ControllerLabels { controller }).inc();
    }

    /// Records a reconcile's duration in seconds.
    pub fn reconcile_finished(&self, controller: &'static str, elapsed: Duration) {
        self.duration.get_or_create(&ControllerLabels { controller }).observe(elapsed.as_secs_f64());
        self.in_flight.get_or_create(&ControllerLabels { controller }).dec();
    }

    /// Counts a failed reconcile by category.
    pub fn reconcile_failed(&self, controller: &'static str, category: Category) {
        self.errors.get_or_create(&ErrorLabels { controller, category: category.as_str() }).inc();
    }

    /// Counts one desired child: `applied` true when an apply was sent.
    pub fn child_apply(&self, kind: &'static str, applied: bool) {
        let outcome = if applied { "applied" } else { "skipped" };
        self.applies.get_or_create(&ApplyLabels { kind, outcome }).inc();
    }

    /// Counts an ARM request by method and status (a number, or `auth` / `transport`).
    pub fn arm_request(&self, method: &'static str, status: &str) {
        self.arm_requests.get_or_create(&ArmLabels { method, status: status.to_owned() }).inc();
    }

    /// Records ARM's reported throttle headroom (`reads` or `writes`).
    pub fn arm_ratelimit_remaining(&self, kind: &'static str, remaining: i64) {
        self.arm_headroom.get_or_create(&HeadroomLabels { kind }).set(remaining);
    }

    /// Records whether this instance is the leader.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        if let Some(heap) = HEAP_PROBE.get().and_then(|probe| probe()) {
            self.heap_allocated.set(i64::try_from(heap.allocated).unwrap_or(i64::MAX));
            self.heap_resident.set(i64::try_from(heap.resident).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A tower layer for the kube client that counts requests by verb.
    pub fn request_layer(&self) -> RequestCountLayer {
        RequestCountLayer { counter: self.kube_requests.clone() }
    }
}

/// Counts every request the kube client sends, labelled by verb.
#[derive(Clone)]
pub struct RequestCountLayer {
    counter: Family<VerbLabels, Counter>,
}

impl<S> Layer<S> for RequestCountLayer {
    type Service = RequestCount<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestCount { inner, counter: self.counter.clone() }
    }
}

/// The service [`RequestCountLayer`] wraps around the kube client's transport.
#[derive(Clone)]
pub struct RequestCount<S> {
    inner: S,
    counter: Family<VerbLabels, Counter>,
}

impl<S, B> Service<http::Request<B>> for RequestCount<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let watch = request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true"));
        let verb = match *request.method() {
            http::Method::GET if watch => "watch",
            http::Method::GET => "get",
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "other",
        };
        let resource = resource_of(request.uri().path());
        self.counter.get_or_create(&VerbLabels { verb, resource }).inc();
        self.inner.call(request)
    }
}

/// Shared health state: `/readyz` answers 200 once every controller has synced its caches
/// and no check reports a problem.
#[derive(Clone)]
pub struct Health {
    pending: Arc<AtomicUsize>,
    /// Problems by the check that reports them (e.g. `permissions`, `cluster identity`).
    problems: Arc<std::sync::Mutex<BTreeMap<&'static str, Vec<String>>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Health {
    /// Health that turns ready after `controllers` calls of [`Health::set_ready`].
    pub fn new(controllers: usize) -> Self {
        Self { pending: Arc::new(AtomicUsize::new(controllers)), problems: Arc::default() }
    }

    /// Replaces the problems that check `source` reports (e.g. missing permissions); any
    /// problem keeps the operator unready, and an empty list clears that check's problems.
    /// Problems are shown by `/readyz`, so they must not hold secret values.
    pub fn set_problems(&self, source: &'static str, problems: Vec<String>) {
        if let Ok(mut current) = self.problems.lock() {
            if problems.is_empty() {
                current.remove(source);
            } else {
                current.insert(source, problems);
            }
        }
    }

    /// Why the operator is not ready, one line each (by check, in name order); empty when
    /// ready.
    pub fn unready_reasons(&self) -> Vec<String> {
        let mut reasons: Vec<String> =
            self.problems.lock().map(|p| p.values().flatten().cloned().collect()).unwrap_or_default();
        if self.pending.load(Ordering::SeqCst) > 0 {
            reasons.push("caches not synced".into());
        }
        reasons
    }

    /// Records that one controller's caches are synced.
    pub fn set_ready(&self) {
        let _ = self.pending.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Whether every controller has synced and nothing else is wrong.
    pub fn is_ready(&self) -> bool {
        self.unready_reasons().is_empty()
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    health: Health,
}

/// Binds the admin server on `addr` (port 0 picks a free port) and serves it in the
/// background. Returns the bound address, which is also logged.
///
/// Errors: the bind error (address in use, permission).
pub async fn serve_admin(addr: SocketAddr, metrics: Metrics, health: Health) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(|State(s): State<AdminState>| async move { s.metrics.encode() }))
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<AdminState>| async move {
                let reasons = s.health.unready_reasons();
                if reasons.is_empty() {
                    (StatusCode::OK, "ok".to_owned())
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, reasons.join("\n"))
                }
            }),
        )
        .with_state(AdminState { metrics, health });
    info!(admin_addr = %bound, "admin server listening on {bound}");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "admin server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_bounded_labels() {
        let metrics = Metrics::new();
        metrics.reconcile_started("solutionstack");
        metrics.reconcile_failed("solutionstack", Category::KubeApi);
        metrics.child_apply("Deployment", false);
        let text = metrics.encode();
        assert!(text.contains("citystack_reconciles_total{controller=\"solutionstack\"} 1"), "{text}");
        assert!(text.contains("category=\"KubeApi\""), "{text}");
        assert!(text.contains("outcome=\"skipped\""), "{text}");
    }

    #[test]
    fn problems_of_one_check_leave_the_others_alone() {
        let health = Health::new(1);
        health.set_ready();
        assert!(health.is_ready());
        health.set_problems("permissions", vec!["get secrets in namespace a".into()]);
        health.set_problems("cluster identity", vec!["reading Namespace kube-system: forbidden".into()]);
        assert_eq!(health.unready_reasons().len(), 2);
        health.set_problems("permissions", Vec::new());
        assert_eq!(health.unready_reasons(), vec!["reading Namespace kube-system: forbidden".to_owned()]);
        health.set_problems("cluster identity", Vec::new());
        assert!(health.is_ready());
    }

    #[test]
    fn resources_come_from_a_fixed_set() {
        assert_eq!(resource_of("/apis/citystack.io/v1alpha1/namespaces/a/solutionstacks/b/status"), "solutionstacks");
        assert_eq!(resource_of("/apis/apps/v1/namespaces/a/deployments"), "deployments");
        assert_eq!(resource_of("/api/v1/namespaces/a/secrets/s"), "secrets");
        assert_eq!(resource_of("/apis/apps/v1/deployments"), "deployments");
        assert_eq!(resource_of("/api/v1/namespaces/x"), "namespaces");
        assert_eq!(resource_of("/apis/coordination.k8s.io/v1/namespaces/a/leases/citystack"), "leases");
        assert_eq!(resource_of("/apis/example.com/v1/namespaces/a/widgets"), "other");
    }
}
