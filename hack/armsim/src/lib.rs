//! armsim — a local Azure Resource Manager simulator (a test double for citystack).
//!
//! One HTTPS server on loopback serves three things:
//! - an Entra ID token endpoint (`/{tenant}/oauth2/v2.0/token`, [`token`]),
//! - Azure Resource Manager (`/subscriptions/...`, [`arm`], per-type behaviour in [`kinds`]),
//! - a test-control API (`/_admin/...`, [`admin`], faults in [`faults`]).
//!
//! Storage accounts can be backed by Azurite ([`azurite`]). TLS material is generated at start
//! ([`tls`]). See `hack/armsim/README.md` for the contract and the known deviations.

pub mod admin;
pub mod arm;
pub mod azurite;
pub mod faults;
pub mod kinds;
pub mod respond;
pub mod tls;
pub mod token;

use crate::respond::{lock, new_uuid, now_rfc3339, set_header};
use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Server configuration (the CLI flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where `ca.pem` and `endpoint` are written (optional for in-process tests).
    pub state_dir: Option<PathBuf>,
    /// Azurite blob endpoint, e.g. `http://127.0.0.1:10000/devstoreaccount1`.
    pub azurite_blob: Option<String>,
    pub azurite_queue: Option<String>,
    pub azurite_table: Option<String>,
    /// How long long-running operations stay non-terminal.
    pub operation_time: Duration,
    /// Access token lifetime (`expires_in`).
    pub token_lifetime: Duration,
    /// The credential accepted in every tenant.
    pub client_id: String,
    pub client_secret: String,
    /// Initial page size of paged lists (changeable at run time through `/_admin/settings`).
    pub page_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            azurite_blob: None,
            azurite_queue: None,
            azurite_table: None,
            operation_time: Duration::from_secs(2),
            token_lifetime: Duration::from_secs(3600),
            client_id: "citystack-test".into(),
            client_secret: "not-a-secret".into(),
            page_size: admin::DEFAULT_PAGE_SIZE,
        }
    }
}

/// Shared server state.
pub struct App {
    pub cfg: Config,
    /// `https://127.0.0.1:PORT` (no trailing slash).
    pub endpoint: String,
    pub state: Mutex<arm::State>,
    pub tokens: Mutex<token::Tokens>,
    pub faults: Mutex<faults::Faults>,
    pub throttle: Mutex<faults::Throttle>,
    pub log: Mutex<admin::RequestLog>,
    /// Run-time settings (`/_admin/settings`).
    pub settings: Mutex<admin::Settings>,
    pub azurite: Option<azurite::Azurite>,
}

/// A running server. Dropping it stops accepting connections.
pub struct Server {
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT`
    pub endpoint: String,
    /// The test CA to trust.
    pub ca_pem: String,
    pub app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Server {
    /// Stops accepting new connections (open ones finish their current request).
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Generates TLS material, binds, writes `ca.pem`/`endpoint` to the state dir (if any) and
/// serves in a background task.
pub async fn start(cfg: Config) -> anyhow::Result<Server> {
    // reqwest (Azurite client, tests) picks the process-wide provider; armsim uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let tls = tls::generate()?;
    let listener = TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let endpoint = format!("https://{addr}");

    let azurite = match (&cfg.azurite_blob, &cfg.azurite_queue) {
        (Some(b), Some(q)) => Some(azurite::Azurite::new(b, q, cfg.azurite_table.as_deref())?),
        (None, None) => None,
        _ => anyhow::bail!("give both --azurite-blob and --azurite-queue, or neither"),
    };

    if let Some(dir) = &cfg.state_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("ca.pem"), &tls.ca_pem).context("writing ca.pem")?;
        std::fs::write(dir.join("endpoint"), format!("{endpoint}\n")).context("writing endpoint")?;
    }

    let app = Arc::new(App {
        tokens: Mutex::new(token::Tokens::new(&cfg.client_id, &cfg.client_secret)),
        settings: Mutex::new(admin::Settings { page_size: cfg.page_size.max(1) }),
        cfg,
        endpoint: endpoint.clone(),
        state: Mutex::new(arm::State::default()),
        faults: Mutex::new(faults::Faults::default()),
        throttle: Mutex::new(faults::Throttle::default()),
        log: Mutex::new(admin::RequestLog::default()),
        azurite,
    });
    let router = router(app.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
    let (tx, mut rx) = oneshot::channel::<()>();

    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let acceptor = acceptor.clone();
                    let svc = TowerToHyperService::new(router.clone());
                    tokio::spawn(async move {
                        let stream = match acceptor.accept(tcp).await {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::debug!("TLS handshake with {peer} failed: {e}");
                                return;
                            }
                        };
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc);
                        if let Err(e) = conn.await {
                            tracing::debug!("connection from {peer}: {e}");
                        }
                    });
                }
            }
        }
    });

    Ok(Server { addr, endpoint, ca_pem: tls.ca_pem, app, shutdown: Some(tx) })
}

/// The route table.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/_admin/faults", post(admin::add_fault).get(admin::list_faults).delete(admin::clear_faults))
        .route("/_admin/regenerate", post(admin::regenerate))
        .route("/_admin/resources", get(admin::list_resources).delete(admin::delete_resource))
        .route("/_admin/requests", get(admin::requests))
        .route("/_admin/counts", get(admin::counts))
        .route("/_admin/reset-log", post(admin::reset_log))
        .route("/_admin/clients", post(admin::add_client))
        .route("/_admin/expire-tokens", post(admin::expire_tokens))
        .route("/_admin/settings", get(admin::get_settings).put(admin::put_settings))
        .route("/{tenant}/oauth2/v2.0/token", post(token::token))
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(token::openid_configuration))
        .route("/common/discovery/instance", get(token::instance_discovery))
        .fallback(arm::handle)
        .layer(axum::middleware::from_fn_with_state(app.clone(), envelope))
        .with_state(app)
}

/// Wraps every request: injected faults (not on `/_admin`), `x-ms-request-id` /
/// `x-ms-correlation-request-id` headers ("Azure Resource Manager RPC: common API details"),
/// and the request log.
async fn envelope(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let admin = path.starts_with("/_admin");
    let correlation = req
        .headers()
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(new_uuid);
    let client_request_id =
        req.headers().get("x-ms-client-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);

    let injected = if admin { None } else { lock(&app.faults).take_request_fault(&method, &path) };
    let mut resp = match injected.as_ref().and_then(faults::Fault::replacement) {
        Some(replaced) => replaced,
        None => next.run(req).await,
    };
    if let Some(fault) = &injected {
        resp = fault.apply(resp).await;
    }

    let request_id = new_uuid();
    set_header(&mut resp, "x-ms-request-id", &request_id);
    set_header(&mut resp, "x-ms-correlation-request-id", &correlation);
    if let Some(c) = client_request_id {
        set_header(&mut resp, "x-ms-client-request-id", &c);
    }
    if !admin {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let subscription =
            (segs.len() >= 2 && segs[0].eq_ignore_ascii_case("subscriptions")).then(|| segs[1].to_string());
        tracing::debug!("{method} {path} -> {}", resp.status().as_u16());
        lock(&app.log).push(admin::Entry {
            time: now_rfc3339(),
            method,
            path,
            status: resp.status().as_u16(),
            subscription,
        });
    }
    resp
}
