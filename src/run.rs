//! `citystack run`: connect, serve the admin endpoints, and run the controllers until SIGTERM
//! or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::FutureExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::leader::{self, LeaderGate, LeaseSettings};
use std::sync::Arc;

use crate::azure::arm::ArmShared;
use crate::azure::cloud::{AzureArgs, Cloud, IdentityKind};
use crate::azure::controller::AzureSettings;
use crate::azure::credential::Credentials;
use crate::cluster;
use crate::permissions;
use crate::stack;
use crate::telemetry::{self, Health, LogFormat, Metrics};

/// Flags of `citystack run` (the Helm chart and the tests depend on these names).
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Kubeconfig file; else $KUBECONFIG, else the in-cluster service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces to watch, comma-separated; all namespaces when empty.
    #[arg(long, value_delimiter = ',', default_value = "")]
    pub namespaces: Vec<String>,
    /// With --namespaces, also run SolutionBlueprint rollouts and write blueprint status, for
    /// the blueprints this installation sees instances of. Only when it serves every instance
    /// of them: two installations rolling out one blueprint would overrule each other.
    /// Watching all namespaces, rollouts always run (not with --shard).
    #[arg(long)]
    pub blueprint_rollouts: bool,
    /// Reconciles running at once (per watched namespace), of each kind: first reconciles of
    /// new or changed objects, and the ones that follow their children (`turns`).
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// Seconds between resyncs of a converged object.
    #[arg(long, default_value_t = 300)]
    pub resync: u64,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Address of the admin server (/metrics, /livez, /readyz); port 0 picks a free one.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// Elect a leader among replicas through a coordination.k8s.io Lease; only the leader
    /// writes, followers keep their caches warm.
    #[arg(long, conflicts_with = "shard")]
    pub leader_elect: bool,
    /// Share the work among replicas: each holds a part of the stacks' UID hash space, set by
    /// the live member Leases (named `<lease-name>-<identity>`), and reconciles only that
    /// part. On Kubernetes 1.36+ with the ShardedListAndWatch feature gate the API server
    /// filters the stacks each replica receives; elsewhere each replica filters them.
    #[arg(long)]
    pub shard: bool,
    /// With --shard, who filters the stacks: `auto` (the API server when it supports
    /// shardSelector, else this replica) or `client` (always this replica).
    #[arg(long, value_enum, default_value = "auto")]
    pub shard_filter: crate::shard::Filter,
    /// Name of the Lease (with --shard: the ring's name, the member Leases' prefix).
    #[arg(long, default_value = "citystack")]
    pub lease_name: String,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Lease duration in seconds: a follower takes over at most this long after the leader
    /// stops renewing.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=600))]
    pub lease_duration: u64,
    /// Seconds before the lease expires at which the leader renews it (less than
    /// --lease-duration).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=599))]
    pub lease_grace: u64,
    /// Seconds in-flight reconciles get to finish after SIGTERM before the process exits.
    #[arg(long, default_value_t = 20)]
    pub shutdown_timeout: u64,
    /// Azure Resource Manager settings.
    #[command(flatten)]
    pub azure: AzureArgs,
}

/// Errors that stop `citystack run` before the controllers start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// A flag combination is invalid.
    #[error("{0}")]
    Flags(String),
    /// The admin server could not bind its address.
    #[error("admin server on {addr}: {source}")]
    Admin {
        /// The address asked for.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

/// Chooses rustls' crypto provider for the process (ring, which kube uses). Needed because
/// the Azure SDK's HTTP client links a second provider, and rustls then refuses to guess.
/// Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds a client from `--kubeconfig`, else `KUBECONFIG` / `~/.kube/config`, else the
/// in-cluster service account, with the request-counting layer of `metrics`.
///
/// Errors: `Kubeconfig` when no configuration can be loaded.
pub async fn client(kubeconfig: Option<&PathBuf>, metrics: &Metrics) -> Result<Client, StartError> {
    install_crypto_provider();
    let config = match kubeconfig {
        Some(path) => {
            let file =
                Kubeconfig::read_from(path).map_err(|e| StartError::Kubeconfig(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| StartError::Kubeconfig(e.to_string()))?
        }
        None => Config::infer().await.map_err(|e| StartError::Kubeconfig(e.to_string()))?,
    };
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| StartError::Kubeconfig(e.to_string()))?;
    Ok(builder.with_layer(&metrics.request_layer()).build())
}

/// Runs the operator until SIGTERM or Ctrl-C; in-flight reconciles finish first.
///
/// Errors: [`StartError`] when the client or the admin server cannot start.
pub async fn run(args: RunArgs) -> Result<(), StartError> {
    telemetry::init_tracing(args.log_format);
    if args.lease_grace >= args.lease_duration {
        return Err(StartError::Flags(format!(
            "--lease-grace ({}) must be less than --lease-duration ({})",
            args.lease_grace, args.lease_duration
        )));
    }
    let metrics = Metrics::new();
    let client = client(args.kubeconfig.as_ref(), &metrics).await?;
    let namespaces: Vec<Option<String>> = {
        let named: Vec<Option<String>> =
            args.namespaces.iter().filter(|n| !n.is_empty()).map(|n| Some(n.clone())).collect();
        if named.is_empty() { vec![None] } else { named }
    };
    // One controller per watched namespace: a namespaced install can then run with Roles only.
    // /readyz turns ready once all of them have synced their caches.
    // Two controllers (SolutionStack, AzureResource) per watched namespace.
    let health = Health::new(namespaces.len() * 2);
    let cloud = Cloud::from_args(&args.azure).map_err(StartError::Flags)?;
    let transport = crate::azure::cloud::transport(args.azure.azure_ca_bundle.as_ref()).map_err(StartError::Flags)?;
    let arm =
        ArmShared::new(transport, &cloud.arm_endpoint, &cloud.scope, args.azure.azure_budget_percent, metrics.clone());
    let throttling = arm.throttling().clone();
    let credentials = Arc::new(
        Credentials::new(client.clone(), arm, cloud, args.azure.azure_identity, &args.azure.trusted_namespaces)
            .map_err(|e| StartError::Flags(e.to_string()))?,
    );
    telemetry::serve_admin(args.admin_addr, metrics.clone(), health.clone())
        .await
        .map_err(|source| StartError::Admin { addr: args.admin_addr, source })?;

    // The selector is evaluated (a Namespace list) only for the operator's own identity.
    let trusted_namespaces =
        args.azure.azure_identity != IdentityKind::None && !args.azure.trusted_namespaces.trim().is_empty();
    let permissions = permissions::required(
        &namespaces,
        (args.leader_elect || args.shard).then_some(args.lease_namespace.as_str()),
        trusted_namespaces,
    );
    tokio::spawn(self_check(client.clone(), permissions, health.clone()));

    let shutdown = CancellationToken::new();
    tokio::spawn(signal(shutdown.clone()));
    info!(namespaces = ?namespaces, concurrency = args.concurrency, resync_seconds = args.resync, "starting controllers");
    // The Azure controllers start only once the cluster's identity is read (never with an
    // empty one); until then /readyz says why. The SolutionStack controllers do not need it.
    let identity_read: ClusterIdentity =
        Box::pin(read_cluster_identity(client.clone(), cluster::Attempts::default(), health.clone(), shutdown.clone()));
    let cluster_uid = identity_read.shared();
    let work =
        Work { client: client.clone(), args: args.clone(), namespaces, credentials, metrics, health, cluster_uid };
    if args.shard {
        let settings = crate::shard::Settings {
            ring: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: identity(),
            duration: args.lease_duration,
            grace: args.lease_grace,
            drain: Duration::from_secs(args.shutdown_timeout),
            filter: args.shard_filter,
        };
        let probe = work.namespaces.first().cloned().flatten();
        // ARM throttles the principal, not the replica: pauses are shared, the budget split.
        tokio::spawn(crate::azure::pauses::run(
            client.clone(),
            settings.namespace.clone(),
            settings.ring.clone(),
            settings.identity.clone(),
            throttling.clone(),
            shutdown.clone(),
        ));
        crate::shard::run(client, settings, probe, shutdown, move |assignment, token| {
            throttling.set_replicas(assignment.members);
            work.controllers(Some(assignment.scope), assignment.gate, token)
        })
        .await;
        info!("stopped");
        return Ok(());
    }
    let (leader, election) = if args.leader_elect {
        let settings = LeaseSettings {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: identity(),
            duration: args.lease_duration,
            grace: args.lease_grace,
        };
        info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "leader election on");
        let (gate, task) = leader::elect(client.clone(), settings, shutdown.clone());
        (gate, Some(task))
    } else {
        (LeaderGate::always(), None)
    };
    tokio::spawn({
        let (metrics, mut changes) = (work.metrics.clone(), leader.changes());
        async move {
            loop {
                metrics.set_leader(*changes.borrow_and_update());
                if changes.changed().await.is_err() {
                    break;
                }
            }
        }
    });
    let controllers = work.controllers(None, leader, shutdown.clone());
    let mut controllers = std::pin::pin!(controllers);
    tokio::select! {
        _ = &mut controllers => {}
        _ = shutdown.cancelled() => {
            // Stop taking work; give in-flight reconciles a bounded time to finish.
            let bound = Duration::from_secs(args.shutdown_timeout);
            if tokio::time::timeout(bound, &mut controllers).await.is_err() {
                tracing::warn!(seconds = args.shutdown_timeout, "in-flight reconciles did not finish in time");
            }
        }
    }
    if let Some(task) = election {
        // The election task releases the lease once `shutdown` is cancelled.
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    info!("stopped");
    Ok(())
}

/// What the controllers of one run (or of one shard period) share.
struct Work {
    client: Client,
    args: RunArgs,
    namespaces: Vec<Option<String>>,
    credentials: Arc<Credentials>,
    metrics: Metrics,
    health: Health,
    cluster_uid: futures::future::Shared<ClusterIdentity>,
}

/// The cluster identity being read (`None` if shut down first).
type ClusterIdentity = std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>>;

impl Work {
    /// The SolutionStack and AzureResource controllers of every watched namespace, limited to
    /// `shard` when sharded, writing while `gate` is open, until `shutdown`.
    fn controllers(
        &self,
        shard: Option<crate::shard::Scope>,
        gate: LeaderGate,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut controllers: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> = Vec::new();
        // Rollouts need every instance of a blueprint in view: not when sharded, and scoped to
        // some namespaces only when told this installation serves all of a blueprint's.
        let all = self.namespaces.iter().any(Option::is_none);
        let members = if shard.is_none() && (all || self.args.blueprint_rollouts) {
            let (members, woken) = crate::blueprint::controller::Members::new(self.namespaces.len());
            let writer = crate::reconciler::Writer {
                client: self.client.clone(),
                gate: gate.clone(),
                metrics: self.metrics.clone(),
            };
            let run = crate::blueprint::controller::run(
                self.client.clone(),
                writer,
                members.clone(),
                woken,
                all,
                shutdown.clone(),
            );
            controllers.push(Box::pin(run));
            Some(members)
        } else {
            None
        };
        for namespace in self.namespaces.clone() {
            let resync = Duration::from_secs(self.args.resync);
            let settings =
                stack::Settings { namespace: namespace.clone(), concurrency: self.args.concurrency, resync, shard };
            controllers.push(Box::pin(stack::run(
                self.client.clone(),
                settings,
                self.metrics.clone(),
                self.health.clone(),
                gate.clone(),
                members.clone(),
                shutdown.clone(),
            )));
            let azure = &self.args.azure;
            let (concurrency, default_subscription) = (self.args.concurrency, azure.azure_subscription_id.clone());
            let operation_deadline = Duration::from_secs(azure.azure_operation_deadline);
            let resync = Duration::from_secs(azure.azure_resync);
            let (client, credentials, metrics, health, gate, shutdown, cluster_uid) = (
                self.client.clone(),
                self.credentials.clone(),
                self.metrics.clone(),
                self.health.clone(),
                gate.clone(),
                shutdown.clone(),
                self.cluster_uid.clone(),
            );
            controllers.push(Box::pin(async move {
                // None: shut down before the identity was read.
                let Some(cluster_uid) = cluster_uid.await else { return };
                let settings = AzureSettings {
                    namespace,
                    concurrency,
                    resync,
                    default_subscription,
                    cluster_uid,
                    operation_deadline,
                    shard,
                };
                crate::azure::controller::run(client, settings, credentials, metrics, health, gate, shutdown).await;
            }));
        }
        futures::future::join_all(controllers).map(|_| ())
    }
}

/// The check name of missing permissions in [`Health`].
const PERMISSIONS: &str = "permissions";
/// The check name of the cluster identity in [`Health`].
const CLUSTER_IDENTITY: &str = "cluster identity";

/// Reads the cluster's identity (kube-system's UID), in rounds of `attempts` until it is read;
/// meanwhile `/readyz` fails naming the last error, and each failed try is logged. `None`
/// when `shutdown` comes first.
async fn read_cluster_identity(
    client: Client,
    attempts: cluster::Attempts,
    health: Health,
    shutdown: CancellationToken,
) -> Option<String> {
    health.set_problems(CLUSTER_IDENTITY, vec!["cluster identity (Namespace kube-system's UID) not read yet".into()]);
    loop {
        tokio::select! {
            read = cluster::cluster_identity(&client, attempts) => match read {
                Ok(uid) => {
                    info!(cluster_uid = %uid, "cluster identity read");
                    health.set_problems(CLUSTER_IDENTITY, Vec::new());
                    return Some(uid);
                }
                Err(error) => health.set_problems(
                    CLUSTER_IDENTITY,
                    vec![format!("cluster identity: {error}; the AzureResource controller waits for it")],
                ),
            },
            _ = shutdown.cancelled() => return None,
        }
    }
}

/// Checks the operator's permissions at start, and again every minute while any is missing
/// (RBAC may be fixed without a restart). Missing ones are logged by name and fail /readyz.
async fn self_check(client: Client, required: Vec<permissions::Permission>, health: Health) {
    loop {
        let missing = permissions::missing(&client, &required).await;
        if missing.is_empty() {
            info!(checked = required.len(), "permissions self check passed");
            health.set_problems(PERMISSIONS, Vec::new());
            return;
        }
        for problem in &missing {
            tracing::error!(problem = %problem, "permissions self check: {problem}");
        }
        health.set_problems(PERMISSIONS, missing);
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// This instance's identity in the Lease: the Pod name in a cluster, else host and pid.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

async fn signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    info!("shutdown requested: finishing in-flight reconciles");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A kube client whose API server is down until `up` is set, then serves kube-system.
    fn cluster(up: Arc<AtomicBool>) -> Client {
        let service = tower::service_fn(move |_request: http::Request<kube::client::Body>| {
            let up = up.load(Ordering::SeqCst);
            async move {
                let (status, body) = if up {
                    (
                        200,
                        r#"{"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadata","metadata":{"name":"kube-system","uid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}}"#,
                    )
                } else {
                    (
                        503,
                        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd is unavailable","code":503}"#,
                    )
                };
                http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(body.as_bytes().to_vec()))
            }
        });
        Client::new(service, "default")
    }

    const QUICK: cluster::Attempts =
        cluster::Attempts { tries: 2, first_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) };

    #[tokio::test]
    async fn unready_while_the_cluster_identity_is_unread() {
        let up = Arc::new(AtomicBool::new(false));
        let health = Health::new(0);
        let shutdown = CancellationToken::new();
        let reading = tokio::spawn(read_cluster_identity(cluster(up.clone()), QUICK, health.clone(), shutdown.clone()));
        let mut waited = 0;
        while !health.unready_reasons().iter().any(|r| r.contains("etcd is unavailable")) {
            assert!(waited < 500, "no reason given: {:?}", health.unready_reasons());
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert!(!health.is_ready());
        up.store(true, Ordering::SeqCst);
        let uid = reading.await.ok().flatten();
        assert_eq!(uid.as_deref(), Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
        assert!(health.is_ready(), "{:?}", health.unready_reasons());
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait_without_an_identity() {
        let health = Health::new(0);
        let shutdown = CancellationToken::new();
        let reading = tokio::spawn(read_cluster_identity(
            cluster(Arc::new(AtomicBool::new(false))),
            QUICK,
            health.clone(),
            shutdown.clone(),
        ));
        shutdown.cancel();
        assert_eq!(reading.await.ok(), Some(None));
    }
}
