//! The Azure Storage data plane behind simulated storage accounts: Azurite.
//!
//! Azurite has one account, `devstoreaccount1`, with a fixed, publicly documented key; every
//! storage account created through armsim maps onto it (containers and queues are shared, not
//! prefixed). Requests are authorised with Shared Key, per "Authorize with Shared Key"
//! (Azure Storage REST API): `Authorization: SharedKey devstoreaccount1:<base64 HMAC-SHA256>` over
//! the documented string-to-sign. With path-style emulator URLs the canonicalized resource names
//! the account twice (`/devstoreaccount1/devstoreaccount1/<container>`), as the emulator docs say.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Azurite's well-known account name.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known account key (documented in Azurite's README; not a secret).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The x-ms-version armsim sends (Azurite runs with `--skipApiVersionCheck` anyway).
const STORAGE_VERSION: &str = "2023-11-03";

/// Azurite endpoints, e.g. `http://127.0.0.1:10000/devstoreaccount1`.
#[derive(Debug, Clone)]
pub struct Azurite {
    pub blob: String,
    pub queue: String,
    pub table: Option<String>,
    client: reqwest::Client,
}

/// Which Azurite service a data-plane object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Blob,
    Queue,
}

impl Azurite {
    pub fn new(blob: &str, queue: &str, table: Option<&str>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
        Ok(Self {
            blob: blob.trim_end_matches('/').to_string(),
            queue: queue.trim_end_matches('/').to_string(),
            table: table.map(|t| t.trim_end_matches('/').to_string()),
            client,
        })
    }

    fn url(&self, service: Service, name: &str) -> String {
        match service {
            Service::Blob => format!("{}/{name}?restype=container", self.blob),
            Service::Queue => format!("{}/{name}", self.queue),
        }
    }

    /// Creates a container ("Create Container": `PUT ?restype=container`) or queue
    /// ("Create Queue": `PUT`). Already existing counts as success (the account is shared).
    pub async fn create(&self, service: Service, name: &str) -> Result<(), String> {
        let status = self.send(reqwest::Method::PUT, service, name).await?;
        match status {
            // 201 Created; 204 for a queue that exists with the same metadata; 409 already exists.
            201 | 204 | 409 => Ok(()),
            other => Err(format!("Azurite answered {other} to creating {service:?} '{name}'")),
        }
    }

    /// Deletes a container ("Delete Container") or queue ("Delete Queue"). Missing is success.
    pub async fn delete(&self, service: Service, name: &str) -> Result<(), String> {
        let status = self.send(reqwest::Method::DELETE, service, name).await?;
        match status {
            202 | 204 | 404 => Ok(()),
            other => Err(format!("Azurite answered {other} to deleting {service:?} '{name}'")),
        }
    }

    /// Does the container/queue exist in Azurite? (`GET ?restype=container` / `GET ?comp=metadata`.)
    pub async fn exists(&self, service: Service, name: &str) -> Result<bool, String> {
        let url = match service {
            Service::Blob => format!("{}/{name}?restype=container", self.blob),
            Service::Queue => format!("{}/{name}?comp=metadata", self.queue),
        };
        let status = self.send_url(reqwest::Method::GET, &url).await?;
        Ok(status == 200)
    }

    async fn send(&self, method: reqwest::Method, service: Service, name: &str) -> Result<u16, String> {
        let url = self.url(service, name);
        self.send_url(method, &url).await
    }

    async fn send_url(&self, method: reqwest::Method, url: &str) -> Result<u16, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad Azurite URL {url}: {e}"))?;
        let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let x_ms = vec![("x-ms-date".to_string(), date), ("x-ms-version".to_string(), STORAGE_VERSION.to_string())];
        let auth = shared_key_authorization(method.as_str(), &parsed, "", "", &x_ms, ACCOUNT, ACCOUNT_KEY)?;
        let mut req = self.client.request(method.clone(), parsed).header("authorization", auth);
        for (k, v) in &x_ms {
            req = req.header(k.as_str(), v.as_str());
        }
        if method == reqwest::Method::PUT {
            // An explicit empty body: Content-Length 0 (signed as the empty string, version ≥ 2015-02-21).
            req = req.body(Vec::<u8>::new());
        }
        let resp = req.send().await.map_err(|e| format!("Azurite request {method} {url} failed: {e}"))?;
        Ok(resp.status().as_u16())
    }
}

/// Builds the `Authorization: SharedKey` header value for a blob/queue request, per
/// "Authorize with Shared Key" (Blob, Queue and File services, version 2009-09-19 and later).
///
/// `content_length` must be `""` when the body is empty; `x_ms_headers` are the request's
/// `x-ms-*` headers.
pub fn shared_key_authorization(
    method: &str,
    url: &reqwest::Url,
    content_length: &str,
    content_type: &str,
    x_ms_headers: &[(String, String)],
    account: &str,
    key_b64: &str,
) -> Result<String, String> {
    // CanonicalizedHeaders: lower-cased x-ms-* names, sorted, "name:value\n" each.
    let mut headers: Vec<(String, String)> = x_ms_headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();

    // CanonicalizedResource: "/" + account + URL path, then "\nname:value" per query parameter,
    // names lower-cased and sorted, repeated names' values joined with commas.
    let mut resource = format!("/{account}{}", url.path());
    let mut params: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in url.query_pairs() {
        params.entry(k.to_ascii_lowercase()).or_default().push(v.into_owned());
    }
    for (k, mut vs) in params {
        vs.sort();
        resource.push_str(&format!("\n{k}:{}", vs.join(",")));
    }

    let string_to_sign =
        format!("{method}\n\n\n{content_length}\n\n{content_type}\n\n\n\n\n\n\n{canonical_headers}{resource}");
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .map_err(|e| format!("account key is not base64: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| format!("HMAC key: {e}"))?;
    mac.update(string_to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(format!("SharedKey {account}:{sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The string-to-sign layout: 12 standard header lines, then headers, then the resource.
    #[test]
    fn signature_is_stable_and_well_formed() {
        let url = reqwest::Url::parse("http://127.0.0.1:10000/devstoreaccount1/raw?restype=container").unwrap();
        let hdrs = vec![
            ("x-ms-version".to_string(), "2023-11-03".to_string()),
            ("x-ms-date".to_string(), "Mon, 01 Jan 2024 00:00:00 GMT".to_string()),
        ];
        let a = shared_key_authorization("PUT", &url, "", "", &hdrs, ACCOUNT, ACCOUNT_KEY).unwrap();
        let b = shared_key_authorization("PUT", &url, "", "", &hdrs, ACCOUNT, ACCOUNT_KEY).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("SharedKey devstoreaccount1:"));
        let c = shared_key_authorization("DELETE", &url, "", "", &hdrs, ACCOUNT, ACCOUNT_KEY).unwrap();
        assert_ne!(a, c);
    }
}
