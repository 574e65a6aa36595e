//! The test-control API under `/_admin` (no authentication; loopback only): faults, key
//! rotation, out-of-band deletion, credentials, and the request log/counters.
//! Simulator-specific: nothing here exists in Azure.

use crate::App;
use crate::faults::Fault;
use crate::respond::{ArmError, json_response, lock, query_pairs, query_param};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One logged request (ARM and token endpoint; `/_admin` is not logged).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// RFC 3339 with milliseconds, UTC.
    pub time: String,
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub status: u16,
    /// The subscription id in the path, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
}

/// The request log (bounded; oldest entries are dropped first).
#[derive(Debug, Default)]
pub struct RequestLog {
    entries: std::collections::VecDeque<Entry>,
}

const MAX_ENTRIES: usize = 100_000;

impl RequestLog {
    pub fn push(&mut self, e: Entry) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ArmError> {
    serde_json::from_slice(body)
        .map_err(|e| ArmError::bad_request("InvalidRequestContent", format!("bad admin request body: {e}")))
}

/// `POST /_admin/faults` — arm a fault rule (see `faults::Fault`).
pub async fn add_fault(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let fault: Fault = match parse(&body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    if let Err(msg) = fault.validate() {
        return ArmError::bad_request("InvalidFault", msg).into_response();
    }
    let stored = lock(&app.faults).add(fault);
    json_response(StatusCode::CREATED, &serde_json::to_value(stored).unwrap_or_default())
}

/// `GET /_admin/faults` — the armed rules with their remaining counts.
pub async fn list_faults(State(app): State<Arc<App>>) -> Response {
    json_response(StatusCode::OK, &Value::Array(lock(&app.faults).list()))
}

/// `DELETE /_admin/faults` — disarm everything.
pub async fn clear_faults(State(app): State<Arc<App>>) -> Response {
    lock(&app.faults).clear();
    json_response(StatusCode::OK, &json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Regenerate {
    resource_id: String,
    /// Optional: `key1`/`primary`/`Primary`/`PrimaryKey`/`Key1` or the secondary forms; both when absent.
    #[serde(default)]
    key_name: Option<String>,
}

/// `POST /_admin/regenerate` `{"resourceId", "keyName"?}` — rotate keys as if the resource's
/// regenerate action had been called (out of band, e.g. by another team). Answers the new keys
/// in the resource's list-keys shape.
pub async fn regenerate(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: Regenerate = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let which = match req.key_name.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("key1" | "primary" | "primarykey") => Some(true),
        Some("key2" | "secondary" | "secondarykey") => Some(false),
        Some(other) => {
            return ArmError::bad_request("InvalidKeyName", format!("unknown keyName '{other}'")).into_response();
        }
    };
    let result = {
        let mut st = lock(&app.state);
        st.tick(std::time::Instant::now());
        st.admin_regenerate(&req.resource_id, which)
    };
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /_admin/resources?id=...` — delete a resource (with children) or a resource group
/// (with its content) immediately, out of band. 200 `{"deleted": true|false}`.
pub async fn delete_resource(State(app): State<Arc<App>>, req: Request) -> Response {
    let pairs = query_pairs(req.uri().query());
    let Some(id) = query_param(&pairs, "id") else {
        return ArmError::bad_request("MissingId", "give ?id=<resource or resource group id>").into_response();
    };
    let deleted = {
        let mut st = lock(&app.state);
        st.tick(std::time::Instant::now());
        st.admin_delete(&id)
    };
    crate::arm::run_cleanups(&app).await;
    json_response(StatusCode::OK, &json!({"deleted": deleted}))
}

/// `GET /_admin/resources` — every group and resource with its lifecycle phase (debugging aid).
pub async fn list_resources(State(app): State<Arc<App>>) -> Response {
    let mut st = lock(&app.state);
    st.tick(std::time::Instant::now());
    let groups: Vec<Value> = st
        .groups
        .values()
        .map(|g| json!({"id": g.id(), "location": g.location, "deleting": g.deleting.is_some()}))
        .collect();
    let resources: Vec<Value> = st
        .resources
        .values()
        .map(|r| json!({"id": r.id, "type": r.class.full_type(), "phase": format!("{:?}", r.phase)}))
        .collect();
    json_response(StatusCode::OK, &json!({"resourceGroups": groups, "resources": resources}))
}

/// `GET /_admin/requests` — the request log, oldest first.
pub async fn requests(State(app): State<Arc<App>>) -> Response {
    let log = lock(&app.log);
    json_response(StatusCode::OK, &serde_json::to_value(&log.entries).unwrap_or_default())
}

/// `GET /_admin/counts` — `{"<METHOD> <path>": n}` over the log.
pub async fn counts(State(app): State<Arc<App>>) -> Response {
    let log = lock(&app.log);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for e in &log.entries {
        *counts.entry(format!("{} {}", e.method, e.path)).or_default() += 1;
    }
    json_response(StatusCode::OK, &serde_json::to_value(counts).unwrap_or_default())
}

/// `POST /_admin/reset-log` — empty the log (and the counts derived from it). Also refills the
/// throttling buckets, so a test starts from a known budget.
pub async fn reset_log(State(app): State<Arc<App>>) -> Response {
    lock(&app.log).entries.clear();
    lock(&app.throttle).reset();
    json_response(StatusCode::OK, &json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Client {
    tenant: String,
    client_id: String,
    client_secret: String,
}

/// `POST /_admin/clients` `{"tenant","clientId","clientSecret"}` — register a service principal
/// (`"tenant": "*"` for any tenant).
pub async fn add_client(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let c: Client = match parse(&body) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if c.client_id.is_empty() || c.client_secret.is_empty() || c.tenant.is_empty() {
        return ArmError::bad_request("InvalidClient", "tenant, clientId and clientSecret are required")
            .into_response();
    }
    lock(&app.tokens).register(&c.tenant, &c.client_id, &c.client_secret);
    json_response(StatusCode::CREATED, &json!({"tenant": c.tenant, "clientId": c.client_id}))
}

/// `POST /_admin/expire-tokens` — every issued token expires now (to test token refresh and
/// `InvalidAuthenticationToken`).
pub async fn expire_tokens(State(app): State<Arc<App>>) -> Response {
    lock(&app.tokens).expire_all();
    json_response(StatusCode::OK, &json!({}))
}

/// The default page size: ARM's own page of "Resources - List By Resource Group".
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// Largest page size accepted.
const MAX_PAGE_SIZE: usize = 100_000;

/// Run-time settings, read and changed through `/_admin/settings`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Entries per page of paged lists; more entries come through `nextLink`.
    pub page_size: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SettingsPatch {
    #[serde(default)]
    page_size: Option<usize>,
}

/// `GET /_admin/settings` — `{"pageSize": n}`.
pub async fn get_settings(State(app): State<Arc<App>>) -> Response {
    let settings = lock(&app.settings).clone();
    json_response(StatusCode::OK, &serde_json::to_value(settings).unwrap_or_default())
}

/// `PUT /_admin/settings` `{"pageSize": n}` (fields optional) — change settings; answers them.
pub async fn put_settings(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let patch: SettingsPatch = match parse(&body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Some(n) = patch.page_size
        && !(1..=MAX_PAGE_SIZE).contains(&n)
    {
        return ArmError::bad_request("InvalidSettings", format!("pageSize must be 1..={MAX_PAGE_SIZE}, not {n}"))
            .into_response();
    }
    let settings = {
        let mut s = lock(&app.settings);
        if let Some(n) = patch.page_size {
            s.page_size = n;
        }
        s.clone()
    };
    json_response(StatusCode::OK, &serde_json::to_value(settings).unwrap_or_default())
}
