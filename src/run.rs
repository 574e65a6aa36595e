//! `citystack run`: connect, serve the admin endpoints, and run the controllers until SIGTERM
//! or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio_util::sync::CancellationToken;
use tracing::info;

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
    /// Reconciles running at once (per watched namespace).
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
}

/// Errors that stop `citystack run` before the controllers start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// The admin server could not bind its address.
    #[error("admin server on {addr}: {source}")]
    Admin {
        /// The address asked for.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

/// Builds a client from `--kubeconfig`, else `KUBECONFIG` / `~/.kube/config`, else the
/// in-cluster service account, with the request-counting layer of `metrics`.
///
/// Errors: `Kubeconfig` when no configuration can be loaded.
pub async fn client(kubeconfig: Option<&PathBuf>, metrics: &Metrics) -> Result<Client, StartError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| StartError::Kubeconfig(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| StartError::Kubeconfig(e.to_string()))?
        }
        None => Config::infer()
            .await
            .map_err(|e| StartError::Kubeconfig(e.to_string()))?,
    };
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| StartError::Kubeconfig(e.to_string()))?;
    Ok(builder.with_layer(&metrics.request_layer()).build())
}

/// Runs the operator until SIGTERM or Ctrl-C; in-flight reconciles finish first.
///
/// Errors: [`StartError`] when the client or the admin server cannot start.
pub async fn run(args: RunArgs) -> Result<(), StartError> {
    telemetry::init_tracing(args.log_format);
    let metrics = Metrics::new();
    let client = client(args.kubeconfig.as_ref(), &metrics).await?;
    let namespaces: Vec<Option<String>> = {
        let named: Vec<Option<String>> = args
            .namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .map(|n| Some(n.clone()))
            .collect();
        if named.is_empty() { vec![None] } else { named }
    };
    // One controller per watched namespace: a namespaced install can then run with Roles only.
    // /readyz turns ready once all of them have synced their caches.
    let health = Health::new(namespaces.len());
    telemetry::serve_admin(args.admin_addr, metrics.clone(), health.clone())
        .await
        .map_err(|source| StartError::Admin {
            addr: args.admin_addr,
            source,
        })?;

    let shutdown = CancellationToken::new();
    tokio::spawn(signal(shutdown.clone()));
    info!(namespaces = ?namespaces, concurrency = args.concurrency, resync_seconds = args.resync, "starting controllers");
    let controllers = namespaces.into_iter().map(|namespace| {
        let settings = stack::Settings {
            namespace,
            concurrency: args.concurrency,
            resync: Duration::from_secs(args.resync),
        };
        stack::run(
            client.clone(),
            settings,
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        )
    });
    futures::future::join_all(controllers).await;
    info!("stopped");
    Ok(())
}

async fn signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
