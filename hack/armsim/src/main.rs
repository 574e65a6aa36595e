//! `armsim --listen 127.0.0.1:0 --state-dir DIR [--azurite-blob URL --azurite-queue URL]`
//!
//! Prints `armsim listening on https://127.0.0.1:PORT` once ready, writes `DIR/ca.pem` and
//! `DIR/endpoint`, and runs until SIGINT/SIGTERM.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "armsim", about = "A local Azure Resource Manager simulator (test double)")]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory for ca.pem and endpoint.
    #[arg(long)]
    state_dir: PathBuf,
    /// Azurite blob endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1
    #[arg(long, requires = "azurite_queue")]
    azurite_blob: Option<String>,
    /// Azurite queue endpoint, e.g. http://127.0.0.1:10001/devstoreaccount1
    #[arg(long, requires = "azurite_blob")]
    azurite_queue: Option<String>,
    /// Azurite table endpoint (optional; only reported in primaryEndpoints.table).
    #[arg(long)]
    azurite_table: Option<String>,
    /// How long long-running operations stay in progress (seconds, fractions allowed).
    #[arg(long, default_value_t = 2.0)]
    operation_seconds: f64,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    token_seconds: u64,
    /// Client id accepted in every tenant.
    #[arg(long, default_value = "citystack-test")]
    client_id: String,
    /// Secret of --client-id.
    #[arg(long, default_value = "not-a-secret")]
    client_secret: String,
    /// Entries per page of paged lists ("Resources - List By Resource Group"); clients must
    /// follow nextLink past it. Changeable at run time: PUT /_admin/settings {"pageSize": N}.
    #[arg(long, default_value_t = armsim::admin::DEFAULT_PAGE_SIZE)]
    page_size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ARMSIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("armsim=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if !(cli.operation_seconds.is_finite() && cli.operation_seconds >= 0.0) {
        anyhow::bail!("--operation-seconds must be a non-negative number");
    }
    let cfg = armsim::Config {
        listen: cli.listen,
        state_dir: Some(cli.state_dir),
        azurite_blob: cli.azurite_blob,
        azurite_queue: cli.azurite_queue,
        azurite_table: cli.azurite_table,
        operation_time: Duration::from_secs_f64(cli.operation_seconds),
        token_lifetime: Duration::from_secs(cli.token_seconds),
        client_id: cli.client_id,
        client_secret: cli.client_secret,
        page_size: cli.page_size,
    };
    let server = armsim::start(cfg).await?;
    println!("armsim listening on {}", server.endpoint);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("armsim shutting down");
    Ok(())
}
