//! Test harness: an in-process armsim plus a reqwest client that trusts its CA.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub const API: &str = "2024-01-01";
pub const SUB: &str = "00000000-0000-0000-0000-00000000000a";
pub const SUB2: &str = "00000000-0000-0000-0000-00000000000b";

/// A reqwest client (rustls, ring) that trusts exactly the given CA.
pub fn client(ca_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM parses")).expect("CA is a valid trust anchor");
    }
    let tls = rustls::ClientConfig::builder_with_provider(armsim::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(tls).build().expect("reqwest client")
}

pub struct Sim {
    pub server: armsim::Server,
    pub http: reqwest::Client,
    token: String,
}

/// A response, read fully.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub async fn read(resp: reqwest::Response) -> Resp {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
    Resp { status, headers, body }
}

impl Sim {
    /// armsim with 300 ms long-running operations.
    pub async fn start() -> Sim {
        Self::start_with(armsim::Config { operation_time: Duration::from_millis(300), ..Default::default() }).await
    }

    pub async fn start_with(cfg: armsim::Config) -> Sim {
        let server = armsim::start(cfg).await.expect("armsim starts");
        let http = client(&server.ca_pem);
        let mut sim = Sim { server, http, token: String::new() };
        let t = sim.token("tenant-a", "citystack-test", "not-a-secret").await;
        assert_eq!(t.status, StatusCode::OK, "{:?}", t.body);
        sim.token = t.body["access_token"].as_str().expect("access_token").to_string();
        sim
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.endpoint)
    }

    pub async fn token(&self, tenant: &str, client_id: &str, secret: &str) -> Resp {
        let form = [
            ("client_id", client_id),
            ("client_secret", secret),
            ("grant_type", "client_credentials"),
            ("scope", "https://management.azure.com/.default"),
        ];
        read(self.http.post(self.url(&format!("/{tenant}/oauth2/v2.0/token"))).form(&form).send().await.expect("send"))
            .await
    }

    /// An authenticated ARM call; adds `api-version` unless the path has a query already.
    pub async fn arm(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let url = if path.contains('?') || path.starts_with("https://") {
            if path.starts_with("https://") { path.to_string() } else { self.url(path) }
        } else {
            format!("{}?api-version={API}", self.url(path))
        };
        let mut req = self.http.request(method.parse().expect("method"), url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        read(req.send().await.expect("send")).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method.parse().expect("method"), self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        read(req.send().await.expect("send")).await
    }

    pub async fn put_group(&self, sub: &str, rg: &str) -> Resp {
        self.arm("PUT", &format!("/subscriptions/{sub}/resourcegroups/{rg}"), Some(json!({"location": "westeurope"})))
            .await
    }

    /// Polls `url` (an absolute async-operation URL) until its status is terminal.
    pub async fn wait_status(&self, url: &str) -> Resp {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.arm("GET", url, None).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            if r.body["status"] != "InProgress" {
                return r;
            }
            assert!(Instant::now() < deadline, "operation never finished");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls a Location URL until it stops answering 202.
    pub async fn wait_location(&self, url: &str) -> Resp {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.arm("GET", url, None).await;
            if r.status != StatusCode::ACCEPTED {
                return r;
            }
            assert_eq!(r.header("retry-after"), Some("1"));
            assert!(Instant::now() < deadline, "operation never finished");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A response read as bytes (for bodies that are not JSON).
pub struct RawResp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Sim {
    /// An authenticated ARM call whose answer is read as bytes.
    pub async fn arm_raw(&self, method: &str, path: &str, body: Option<Value>) -> RawResp {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else if path.contains('?') {
            self.url(path)
        } else {
            format!("{}?api-version={API}", self.url(path))
        };
        let mut req = self.http.request(method.parse().expect("method"), url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body").to_vec();
        RawResp { status, headers, body }
    }

    /// Polls GET `path` until `pointer` in its body equals `want`.
    pub async fn wait_field(&self, path: &str, pointer: &str, want: &str) -> Resp {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.arm("GET", path, None).await;
            if r.body.pointer(pointer).and_then(Value::as_str) == Some(want) {
                return r;
            }
            assert!(Instant::now() < deadline, "{path}: {pointer} never became {want}: {:?}", r.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn rid(sub: &str, rg: &str, tail: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{tail}")
}
