//! Azure Resource Manager: request routing and the in-memory state behind it.
//!
//! The contract followed, by rule:
//! - Each kind's REST spec (`kinds::Kind::contract`) — the status, body and async-operation
//!   headers of PUT and DELETE, per operation and api-version.
//! - "Azure Resource Manager RPC: resource API reference" — GET of a missing resource is 404
//!   `ResourceNotFound`; DELETE of a missing resource is 204; paths are case-insensitive;
//!   `location` is normalised (`"South East Asia"` → `southeastasia`).
//! - "Azure Resource Manager RPC: asynchronous operations" — the monitors long-running writes
//!   name: `Azure-AsyncOperation` (200 `{status: InProgress|Succeeded|Failed, error}`) and
//!   `Location` (202 while running, then the final answer), with `Retry-After`.
//! - "Resource Groups - Create Or Update / Get / Delete / Check Existence / List / Update" and
//!   "Resources - List By Resource Group".
//! - "Azure Resource Manager RPC: common API details" — `api-version` is required
//!   (400 `MissingApiVersionParameter`), `x-ms-request-id`/`x-ms-correlation-request-id`, error
//!   bodies `{"error":{"code","message"}}`.
//!
//! Time is evaluated lazily: an operation completes when a request observes that its deadline
//! has passed (`State::tick`), so there are no background tasks and results are deterministic.

use crate::App;
use crate::azurite::Service;
use crate::kinds::{self, Answer, Classified, Keys, Kind, LroHeaders, Phase};
use crate::respond::{
    ArmError, empty_response, json_response, lock, new_uuid, now_rfc3339, query_pairs, query_param, rfc3339, set_header,
};
use crate::token::{self, Principal};
use axum::body::Bytes;
use axum::extract::{Request, State as AxState};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request bodies larger than this are refused (ARM's limit is 4 MB too).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A resource group.
#[derive(Debug, Clone)]
pub struct Group {
    pub sub: String,
    pub name: String,
    pub location: String,
    pub tags: Option<Value>,
    pub managed_by: Option<Value>,
    /// The delete operation running on this group, if any.
    pub deleting: Option<String>,
}

impl Group {
    pub fn id(&self) -> String {
        format!("/subscriptions/{}/resourceGroups/{}", self.sub, self.name)
    }

    /// "Resource Groups - Get" response shape.
    fn render(&self) -> Value {
        let mut v = json!({
            "id": self.id(),
            "name": self.name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": self.location,
            "properties": {"provisioningState": if self.deleting.is_some() { "Deleting" } else { "Succeeded" }},
        });
        if let Some(t) = &self.tags {
            v["tags"] = t.clone();
        }
        if let Some(m) = &self.managed_by {
            v["managedBy"] = m.clone();
        }
        v
    }
}

/// A resource (curated or generic).
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: String,
    pub sub: String,
    pub rg: String,
    pub class: Classified,
    /// Names along the id, e.g. `[account, "default", container]`.
    pub names: Vec<String>,
    pub location: Option<String>,
    /// Top-level fields as sent, except id/name/type/location/properties (tags, sku, kind, ...).
    pub top: Map<String, Value>,
    /// Properties as sent, minus write-only ones.
    pub props: Map<String, Value>,
    /// Write-only properties (stored, never returned).
    pub secrets: Map<String, Value>,
    /// Read-only properties the provider computed.
    pub computed: Map<String, Value>,
    pub keys: Option<Keys>,
    pub phase: Phase,
    /// The long-running operation in progress on this resource.
    pub op: Option<String>,
    pub tenant: String,
    pub principal_id: String,
    pub created_by: String,
    pub created_at: String,
    pub modified_by: String,
    pub modified_at: String,
}

impl Resource {
    pub fn kind(&self) -> Kind {
        self.class.kind
    }

    pub fn name(&self) -> &str {
        self.names.last().map(String::as_str).unwrap_or_default()
    }

    /// The resource as GET returns it.
    pub fn render(&self) -> Value {
        let mut obj = self.top.clone();
        obj.insert("id".into(), self.id.clone().into());
        obj.insert("name".into(), self.name().into());
        obj.insert("type".into(), self.class.full_type().into());
        if let Some(loc) = &self.location {
            obj.insert("location".into(), loc.clone().into());
        }
        if self.kind().tracked() && !obj.contains_key("tags") {
            obj.insert("tags".into(), json!({}));
        }
        // System-assigned identities get a principal ("Managed identities: ARM resource identity").
        if let Some(identity) = obj.get_mut("identity").and_then(Value::as_object_mut) {
            let system = identity.get("type").and_then(Value::as_str).is_some_and(|t| t.contains("SystemAssigned"));
            if system {
                identity.insert("principalId".into(), self.principal_id.clone().into());
                identity.insert("tenantId".into(), self.tenant.clone().into());
            }
        }
        let mut props = self.props.clone();
        for (k, v) in &self.computed {
            props.insert(k.clone(), v.clone());
        }
        for (k, v) in self.kind().status_fields(self.phase) {
            props.insert(k.into(), v);
        }
        obj.insert("properties".into(), Value::Object(props));
        obj.insert(
            "systemData".into(),
            json!({
                "createdBy": self.created_by, "createdByType": "Application", "createdAt": self.created_at,
                "lastModifiedBy": self.modified_by, "lastModifiedByType": "Application", "lastModifiedAt": self.modified_at,
            }),
        );
        Value::Object(obj)
    }

    /// The "Resources - List By Resource Group" entry.
    fn render_generic(&self) -> Value {
        let mut v = json!({"id": self.id, "name": self.name(), "type": self.class.full_type()});
        if let Some(l) = &self.location {
            v["location"] = l.clone().into();
        }
        v["tags"] = self.top.get("tags").cloned().unwrap_or_else(|| json!({}));
        for k in ["sku", "kind", "managedBy", "identity"] {
            if let Some(x) = self.top.get(k) {
                v[k] = x.clone();
            }
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpAction {
    Create,
    Update,
    Delete,
    DeleteGroup,
}

/// A long-running operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    pub sub: String,
    pub namespace: String,
    pub location: String,
    /// Lower-cased resource id, or group key for DeleteGroup.
    pub target: String,
    pub action: OpAction,
    pub api_version: String,
    pub deadline: Instant,
    pub duration: Duration,
    pub started_at: jiff::Timestamp,
    pub failure: Option<(String, String)>,
    pub finished: bool,
}

impl Operation {
    fn status(&self) -> &'static str {
        match (self.finished, &self.failure) {
            (false, _) => "InProgress",
            (true, Some(_)) => "Failed",
            (true, None) => "Succeeded",
        }
    }

    fn end_time(&self) -> String {
        let ms = self.started_at.as_millisecond() + self.duration.as_millis() as i64;
        jiff::Timestamp::from_millisecond(ms).map(rfc3339).unwrap_or_default()
    }

    /// `Azure-AsyncOperation` URL (the status monitor).
    pub fn status_url(&self, endpoint: &str) -> String {
        match self.action {
            OpAction::DeleteGroup => self.results_url(endpoint),
            _ => format!(
                "{endpoint}/subscriptions/{}/providers/{}/locations/{}/operationStatuses/{}?api-version={}",
                self.sub, self.namespace, self.location, self.id, self.api_version
            ),
        }
    }

    /// `Location` URL (202 while running, then the final result).
    pub fn results_url(&self, endpoint: &str) -> String {
        match self.action {
            OpAction::DeleteGroup => format!(
                "{endpoint}/subscriptions/{}/operationresults/{}?api-version={}",
                self.sub, self.id, self.api_version
            ),
            _ => format!(
                "{endpoint}/subscriptions/{}/providers/{}/locations/{}/operationResults/{}?api-version={}",
                self.sub, self.namespace, self.location, self.id, self.api_version
            ),
        }
    }

    /// The HTTP status a failed operation's `Location` answers with.
    fn failure_status(code: &str) -> StatusCode {
        let c = code.to_ascii_lowercase();
        if c.contains("internal") {
            StatusCode::INTERNAL_SERVER_ERROR
        } else if c.contains("conflict") {
            StatusCode::CONFLICT
        } else if c.contains("notfound") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        }
    }
}

/// What a new long-running operation is about.
struct NewOp<'a> {
    sub: &'a str,
    namespace: &'a str,
    location: &'a str,
    /// Lower-cased resource id, or group key for DeleteGroup.
    target: String,
    action: OpAction,
    api_version: &'a str,
    /// Injected failure (code, message), if a fault rule matched.
    failure: Option<(String, String)>,
}

/// Everything ARM knows.
#[derive(Debug, Default)]
pub struct State {
    /// Key: `sub/rg`, lower-cased.
    pub groups: BTreeMap<String, Group>,
    /// Key: resource id, lower-cased.
    pub resources: BTreeMap<String, Resource>,
    pub ops: HashMap<String, Operation>,
    /// Azurite containers/queues to delete (no storage account refers to them any more).
    pub cleanups: Vec<(Service, String)>,
}

fn group_key(sub: &str, rg: &str) -> String {
    format!("{}/{}", sub.to_ascii_lowercase(), rg.to_ascii_lowercase())
}

/// ARM normalises locations: lower case, no spaces ("South East Asia" → "southeastasia").
pub fn normalize_location(loc: &str) -> String {
    loc.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase()
}

fn rg_not_found(rg: &str) -> ArmError {
    ArmError::not_found("ResourceGroupNotFound", format!("Resource group '{rg}' could not be found."))
}

impl State {
    /// Completes every operation whose deadline has passed.
    pub fn tick(&mut self, now: Instant) {
        let mut due: Vec<(Instant, String)> = self
            .ops
            .values()
            .filter(|o| !o.finished && o.deadline <= now)
            .map(|o| (o.deadline, o.id.clone()))
            .collect();
        due.sort();
        for (_, id) in due {
            self.finish(&id);
        }
    }

    fn finish(&mut self, op_id: &str) {
        let Some(op) = self.ops.get_mut(op_id) else { return };
        op.finished = true;
        let op = op.clone();
        let failed = op.failure.is_some();
        match op.action {
            OpAction::Create | OpAction::Update => {
                if let Some(r) = self.resources.get_mut(&op.target)
                    && r.op.as_deref() == Some(op_id)
                {
                    r.op = None;
                    r.phase = if failed { Phase::Failed } else { Phase::Succeeded };
                }
            }
            OpAction::Delete => {
                if failed {
                    if let Some(r) = self.resources.get_mut(&op.target) {
                        r.op = None;
                        r.phase = Phase::Failed;
                    }
                } else {
                    self.remove_tree(&op.target);
                }
            }
            OpAction::DeleteGroup => {
                if failed {
                    if let Some(g) = self.groups.get_mut(&op.target) {
                        g.deleting = None;
                    }
                } else {
                    self.remove_group(&op.target);
                }
            }
        }
    }

    /// Removes a resource and its children; queues Azurite clean-ups.
    pub fn remove_tree(&mut self, id_lower: &str) -> usize {
        let prefix = format!("{id_lower}/");
        let keys: Vec<String> =
            self.resources.keys().filter(|k| k.as_str() == id_lower || k.starts_with(&prefix)).cloned().collect();
        self.remove_keys(keys)
    }

    /// Removes a group and everything in it.
    pub fn remove_group(&mut self, gkey: &str) -> bool {
        let Some(g) = self.groups.remove(gkey) else { return false };
        let prefix = format!("{}/", g.id().to_ascii_lowercase());
        let keys: Vec<String> = self.resources.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
        self.remove_keys(keys);
        true
    }

    fn remove_keys(&mut self, keys: Vec<String>) -> usize {
        let n = keys.len();
        let mut removed = Vec::new();
        for k in keys {
            if let Some(r) = self.resources.remove(&k) {
                removed.push(r);
            }
        }
        for r in removed {
            let service = match r.kind() {
                Kind::BlobContainer => Service::Blob,
                Kind::Queue => Service::Queue,
                _ => continue,
            };
            // Every storage account shares Azurite's one account: only delete the container
            // when no other simulated account still has one with that name.
            let still_used =
                self.resources.values().any(|o| o.kind() == r.kind() && o.name().eq_ignore_ascii_case(r.name()));
            if !still_used {
                self.cleanups.push((service, r.name().to_ascii_lowercase()));
            }
        }
        n
    }

    /// Starts a long-running operation that completes `duration` from now.
    fn start_op(&mut self, duration: Duration, new: NewOp<'_>) -> String {
        let id = new_uuid();
        self.ops.insert(
            id.clone(),
            Operation {
                id: id.clone(),
                sub: new.sub.to_string(),
                namespace: new.namespace.to_string(),
                location: new.location.to_string(),
                target: new.target,
                action: new.action,
                api_version: new.api_version.to_string(),
                deadline: Instant::now() + duration,
                duration,
                started_at: jiff::Timestamp::now(),
                failure: new.failure,
                finished: false,
            },
        );
        id
    }

    fn group(&self, sub: &str, rg: &str) -> Result<&Group, ArmError> {
        self.groups.get(&group_key(sub, rg)).ok_or_else(|| rg_not_found(rg))
    }

    /// Walks the ancestors of a nested resource and returns the parent's canonical id
    /// (`None` for a top-level resource). "Azure Resource Manager RPC: child resources":
    /// a missing parent is 404 `ParentResourceNotFound`.
    fn resolve_parent(
        &self,
        g: &Group,
        namespace: &str,
        types: &[String],
        names: &[String],
    ) -> Result<Option<String>, ArmError> {
        let mut parent: Option<String> = None;
        for depth in 1..names.len() {
            let class = kinds::classify(namespace, &types[..depth]);
            let name = &names[depth - 1];
            let candidate = match &parent {
                None => format!("{}/providers/{}/{}/{}", g.id(), class.namespace, class.types[0], name),
                Some(p) => format!("{p}/{}/{name}", class.types[depth - 1]),
            };
            if let Some(r) = self.resources.get(&candidate.to_ascii_lowercase()) {
                parent = Some(r.id.clone());
            } else if class.kind == Kind::StorageService && name.eq_ignore_ascii_case("default") && parent.is_some() {
                parent = parent.map(|p| format!("{p}/{}/default", class.types[depth - 1]));
            } else {
                return Err(ArmError::not_found(
                    "ParentResourceNotFound",
                    format!(
                        "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                        names[..depth].join("/")
                    ),
                ));
            }
        }
        Ok(parent)
    }

    /// The canonical id a resource at this path has (or would have).
    fn canonical_id(&self, g: &Group, class: &Classified, names: &[String], parent: Option<&str>) -> String {
        let name = names.last().map(String::as_str).unwrap_or_default();
        match parent {
            Some(p) => format!("{p}/{}/{name}", class.types.last().map(String::as_str).unwrap_or_default()),
            None => format!("{}/providers/{}/{}/{name}", g.id(), class.namespace, class.types.join("/")),
        }
    }
}

/// A parsed `.../resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}...][/{tail}]`.
#[derive(Debug, Clone)]
struct ResPath {
    sub: String,
    rg: String,
    namespace: String,
    types: Vec<String>,
    names: Vec<String>,
    /// Odd trailing segment: an action (POST) or a collection (GET).
    tail: Option<String>,
}

impl ResPath {
    fn parse(segs: &[String]) -> Option<Self> {
        if segs.len() < 7 || !segs[4].eq_ignore_ascii_case("providers") {
            return None;
        }
        let rest = &segs[6..];
        let mut types = Vec::new();
        let mut names = Vec::new();
        for pair in rest.chunks(2) {
            if pair.len() == 2 {
                types.push(pair[0].clone());
                names.push(pair[1].clone());
            }
        }
        let tail = if rest.len() % 2 == 1 { rest.last().cloned() } else { None };
        Some(ResPath { sub: segs[1].clone(), rg: segs[3].clone(), namespace: segs[5].clone(), types, names, tail })
    }

    fn display(&self) -> String {
        let mut s = self.namespace.clone();
        for (t, n) in self.types.iter().zip(&self.names) {
            s.push_str(&format!("/{t}/{n}"));
        }
        s
    }
}

/// One ARM request, after authentication.
struct Req<'a> {
    app: &'a App,
    method: Method,
    path: String,
    /// The query string, decoded.
    query: Vec<(String, String)>,
    segs: Vec<String>,
    api_version: String,
    body: Bytes,
    principal: Principal,
}

impl Req<'_> {
    fn json_body(&self) -> Result<Value, ArmError> {
        if self.body.is_empty() {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: the body is empty.",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ArmError::bad_request(
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: {e}"),
            )
        })
    }

    fn json_body_or_empty(&self) -> Result<Value, ArmError> {
        if self.body.is_empty() { Ok(json!({})) } else { self.json_body() }
    }

    /// Locks the state, completes due operations, and runs `f`.
    fn state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = lock(&self.app.state);
        st.tick(Instant::now());
        f(&mut st)
    }
}

/// Adds the async-operation headers `which` of `op` to a response.
fn lro_headers(resp: &mut Response, app: &App, op: &Operation, which: LroHeaders) {
    if which.async_operation && op.action != OpAction::DeleteGroup {
        set_header(resp, "azure-asyncoperation", &op.status_url(&app.endpoint));
    }
    if which.location {
        set_header(resp, "location", &op.results_url(&app.endpoint));
    }
    if which.retry_after {
        set_header(resp, "retry-after", "1");
    }
}

/// The first answer of a write, shaped by the kind's contract: its status, the resource as
/// body (when the contract says so), and the async-operation headers of `op`.
fn write_answer(app: &App, answer: Answer, body: Option<Value>, op: Option<&Operation>) -> Response {
    let (status, with_body, headers) = match answer {
        Answer::Sync(status) => (status, true, None),
        Answer::Async { status, body, headers } => (status, body, Some(headers)),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut resp = match body.filter(|_| with_body) {
        Some(b) => json_response(status, &b),
        None => empty_response(status),
    };
    if let (Some(which), Some(op)) = (headers, op) {
        lro_headers(&mut resp, app, op, which);
    }
    resp
}

/// The fallback handler: everything that is not the token endpoint or `/_admin` is ARM.
pub async fn handle(AxState(app): AxState<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = query_pairs(parts.uri.query());
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();

    let principal = match token::authenticate(&app, &parts.headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let api_version = match query_param(&query, "api-version") {
        Some(v) if !v.trim().is_empty() => v,
        _ => {
            return ArmError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
            .into_response();
        }
    };

    // Throttling: per subscription and principal, reads, writes and deletes apart.
    let class = crate::faults::Class::of(&parts.method);
    let subscription = (segs.len() >= 2 && segs[0].eq_ignore_ascii_case("subscriptions")).then(|| segs[1].clone());
    let mut remaining = None;
    if let Some(sub) = &subscription {
        match lock(&app.throttle).take(sub, &principal.client_id, class) {
            Ok(r) => remaining = Some(r),
            Err(retry) => {
                let mut resp = ArmError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "SubscriptionRequestsThrottled",
                    format!("Number of '{}' requests for subscription '{sub}' actor '{}' exceeded. Please try again after '{retry}' seconds after additional tokens are available.", class.word(), principal.client_id),
                )
                .with_header("retry-after", retry.to_string())
                .into_response();
                set_header(&mut resp, class.header(), "0");
                return resp;
            }
        }
    }

    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return ArmError::bad_request("InvalidRequestContent", format!("could not read the request body: {e}"))
                .into_response();
        }
    };
    let r = Req { app: &app, method: parts.method.clone(), path, query, segs, api_version, body, principal };
    let mut resp = route(&r).await.unwrap_or_else(IntoResponse::into_response);
    if let Some(rem) = remaining {
        set_header(&mut resp, class.header(), &rem.to_string());
    }
    run_cleanups(&app).await;
    resp
}

/// Deletes Azurite containers/queues nobody refers to any more (after the state lock is released).
pub async fn run_cleanups(app: &App) {
    let cleanups = std::mem::take(&mut lock(&app.state).cleanups);
    let Some(az) = &app.azurite else { return };
    for (service, name) in cleanups {
        if let Err(e) = az.delete(service, &name).await {
            tracing::warn!("azurite clean-up of {service:?} '{name}' failed: {e}");
        }
    }
}

async fn route(r: &Req<'_>) -> Result<Response, ArmError> {
    let s = &r.segs;
    let eq = |i: usize, lit: &str| s.get(i).is_some_and(|x| x.eq_ignore_ascii_case(lit));
    let m = &r.method;
    if s.is_empty() || !eq(0, "subscriptions") {
        return Err(not_routed(r));
    }
    if s.len() == 1 && m == Method::GET {
        return Ok(list_subscriptions(r));
    }
    if s.len() == 2 && m == Method::GET {
        return Ok(get_subscription(r));
    }
    if eq(2, "resourcegroups") {
        return match (s.len(), m) {
            (3, &Method::GET) => Ok(list_groups(r)),
            (4, _) => group_request(r),
            (5, &Method::GET) if eq(4, "resources") => list_group_resources(r),
            (n, _) if n >= 7 && eq(4, "providers") => resource_request(r).await,
            _ => Err(not_routed(r)),
        };
    }
    if eq(2, "providers") {
        return match (s.len(), m) {
            (4, &Method::GET) => Ok(provider(r)),
            (5, &Method::POST) if eq(4, "register") => Ok(provider(r)),
            (5, &Method::POST) if eq(4, "checkNameAvailability") => check_name(r),
            (8, &Method::GET) if eq(4, "locations") && eq(6, "operationStatuses") => operation_status(r),
            (8, &Method::GET) if eq(4, "locations") && (eq(6, "operationResults") || eq(6, "azureAsyncOperation")) => {
                operation_result(r)
            }
            _ => Err(not_routed(r)),
        };
    }
    if s.len() == 4 && eq(2, "operationresults") && m == Method::GET {
        return operation_result(r);
    }
    Err(not_routed(r))
}

fn not_routed(r: &Req<'_>) -> ArmError {
    ArmError::not_found(
        "NotFound",
        format!("armsim does not implement {} {} (see hack/armsim/README.md).", r.method, r.path),
    )
}

/// "Subscriptions - List": the subscriptions armsim has seen.
fn list_subscriptions(r: &Req<'_>) -> Response {
    let subs: std::collections::BTreeSet<String> = r.state(|st| st.groups.values().map(|g| g.sub.clone()).collect());
    let value: Vec<Value> = subs.iter().map(|s| subscription_body(s, &r.principal.tenant)).collect();
    json_response(StatusCode::OK, &json!({"value": value}))
}

/// "Subscriptions - Get": every subscription id exists and is Enabled.
fn get_subscription(r: &Req<'_>) -> Response {
    json_response(StatusCode::OK, &subscription_body(&r.segs[1], &r.principal.tenant))
}

fn subscription_body(sub: &str, tenant: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{sub}"),
        "subscriptionId": sub,
        "tenantId": tenant,
        "displayName": format!("armsim {sub}"),
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "armsim", "spendingLimit": "Off"},
        "authorizationSource": "RoleBased",
    })
}

/// "Providers - Get" / "Providers - Register": every namespace is Registered.
fn provider(r: &Req<'_>) -> Response {
    let ns = &r.segs[3];
    json_response(
        StatusCode::OK,
        &json!({
            "id": format!("/subscriptions/{}/providers/{ns}", r.segs[1]),
            "namespace": ns,
            "registrationState": "Registered",
            "registrationPolicy": "RegistrationRequired",
            "resourceTypes": [],
        }),
    )
}

/// `POST /subscriptions/{sub}/providers/{ns}/checkNameAvailability` ("Storage Accounts - Check
/// Name Availability", "Vaults - Check Name Availability", ...): `{name, type}` →
/// `{nameAvailable, reason, message}`.
fn check_name(r: &Req<'_>) -> Result<Response, ArmError> {
    let body = r.json_body()?;
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let ty = body.get("type").and_then(Value::as_str).unwrap_or_default();
    let ns = &r.segs[3];
    let types: Vec<String> = ty.split('/').skip(1).map(str::to_string).collect();
    let types = if types.is_empty() { vec![ty.to_string()] } else { types };
    let class = kinds::classify(ns, &types);
    if let Err(e) = class.kind.validate_name(&name) {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"nameAvailable": false, "reason": "Invalid", "message": e.message}),
        ));
    }
    let taken = r.state(|st| {
        st.resources.values().any(|x| {
            x.kind() == class.kind
                && x.class.full_type().eq_ignore_ascii_case(&class.full_type())
                && x.name().eq_ignore_ascii_case(&name)
        })
    });
    let body = if taken {
        json!({"nameAvailable": false, "reason": "AlreadyExists", "message": class.kind.name_taken(&name).message})
    } else {
        json!({"nameAvailable": true})
    };
    Ok(json_response(StatusCode::OK, &body))
}

// ---------------------------------------------------------------------------------------------
// Resource groups

/// "Resource Groups - List".
fn list_groups(r: &Req<'_>) -> Response {
    let sub = r.segs[1].to_ascii_lowercase();
    let value: Vec<Value> =
        r.state(|st| st.groups.values().filter(|g| g.sub.to_ascii_lowercase() == sub).map(Group::render).collect());
    json_response(StatusCode::OK, &json!({"value": value}))
}

/// `/subscriptions/{sub}/resourcegroups/{rg}`: "Resource Groups - Create Or Update" (PUT, 201/200,
/// synchronous), "Get" (GET), "Check Existence" (HEAD, 204/404), "Update" (PATCH, tags),
/// "Delete" (DELETE, 202 + Location; deletes everything in the group).
fn group_request(r: &Req<'_>) -> Result<Response, ArmError> {
    let (sub, rg) = (r.segs[1].clone(), r.segs[3].clone());
    let key = group_key(&sub, &rg);
    match r.method {
        Method::GET => {
            let g = r.state(|st| st.group(&sub, &rg).map(Group::render))?;
            Ok(json_response(StatusCode::OK, &g))
        }
        Method::HEAD => {
            let exists = r.state(|st| st.groups.contains_key(&key));
            Ok(empty_response(if exists { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }))
        }
        Method::PUT => {
            let body = r.json_body()?;
            let Some(location) =
                body.get("location").and_then(Value::as_str).map(normalize_location).filter(|l| !l.is_empty())
            else {
                return Err(ArmError::bad_request(
                    "LocationRequired",
                    "The location property is required for this definition.",
                ));
            };
            if rg.len() > 90 || rg.ends_with('.') || !rg.chars().all(|c| c.is_alphanumeric() || "-_.()".contains(c)) {
                return Err(ArmError::bad_request(
                    "InvalidResourceGroup",
                    format!(
                        "The provided resource group name '{rg}' has these invalid characters or is too long (max 90, alphanumerics, '-', '_', '.', '(', ')', not ending in '.')."
                    ),
                ));
            }
            r.state(|st| {
                if let Some(g) = st.groups.get_mut(&key) {
                    if g.deleting.is_some() {
                        return Err(ArmError::conflict(
                            "ResourceGroupBeingDeleted",
                            format!("The resource group '{}' is in deprovisioning state and cannot perform this operation.", g.name),
                        ));
                    }
                    if g.location != location {
                        return Err(ArmError::conflict(
                            "InvalidResourceGroupLocation",
                            format!("Invalid resource group location '{location}'. The Resource group already exists in location '{}'.", g.location),
                        ));
                    }
                    g.tags = body.get("tags").cloned();
                    g.managed_by = body.get("managedBy").cloned();
                    Ok(json_response(StatusCode::OK, &g.render()))
                } else {
                    let g = Group {
                        sub: sub.clone(),
                        name: rg.clone(),
                        location,
                        tags: body.get("tags").cloned(),
                        managed_by: body.get("managedBy").cloned(),
                        deleting: None,
                    };
                    let v = g.render();
                    st.groups.insert(key.clone(), g);
                    Ok(json_response(StatusCode::CREATED, &v))
                }
            })
        }
        Method::PATCH => {
            let body = r.json_body()?;
            r.state(|st| {
                let g = st.groups.get_mut(&key).ok_or_else(|| rg_not_found(&rg))?;
                if let Some(t) = body.get("tags") {
                    g.tags = Some(t.clone());
                }
                if let Some(m) = body.get("managedBy") {
                    g.managed_by = Some(m.clone());
                }
                Ok(json_response(StatusCode::OK, &g.render()))
            })
        }
        Method::DELETE => {
            let app = r.app;
            let failure = lock(&app.faults).take_operation_fault(r.method.as_str(), &r.path);
            r.state(|st| {
                let g = st.groups.get(&key).ok_or_else(|| rg_not_found(&rg))?.clone();
                let op_id = match &g.deleting {
                    Some(id) => id.clone(),
                    None => {
                        let id = st.start_op(
                            app.cfg.operation_time,
                            NewOp {
                                sub: &g.sub,
                                namespace: "Microsoft.Resources",
                                location: &g.location,
                                target: key.clone(),
                                action: OpAction::DeleteGroup,
                                api_version: &r.api_version,
                                failure,
                            },
                        );
                        if let Some(gm) = st.groups.get_mut(&key) {
                            gm.deleting = Some(id.clone());
                        }
                        id
                    }
                };
                let op = st.ops.get(&op_id).cloned().ok_or_else(|| ArmError::internal("operation vanished"))?;
                // "Resource Groups - Delete": 202 + Location + Retry-After.
                let mut resp = empty_response(StatusCode::ACCEPTED);
                lro_headers(&mut resp, app, &op, kinds::LOCATION);
                Ok(resp)
            })
        }
        _ => Err(method_not_allowed(r)),
    }
}

/// "Resources - List By Resource Group": top-level resources in the group, paged. A page holds
/// at most the admin page size (`/_admin/settings`, default 1000) or `$top` entries, whichever
/// is smaller; when more remain the answer carries `nextLink` (absolute, with `$skiptoken`), as
/// every ARM list does ("x-ms-pageable": nextLinkName `nextLink`). `$filter`/`$expand` are
/// ignored.
fn list_group_resources(r: &Req<'_>) -> Result<Response, ArmError> {
    let (sub, rg) = (&r.segs[1], &r.segs[3]);
    let top = match query_param(&r.query, "$top") {
        None => None,
        Some(t) => match t.trim().parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(ArmError::bad_request(
                    "InvalidTopParameter",
                    format!("The value '{t}' of the $top query parameter is not a positive integer."),
                ));
            }
        },
    };
    let after = match query_param(&r.query, "$skiptoken") {
        None => None,
        Some(token) => Some(decode_skiptoken(&token).ok_or_else(|| {
            ArmError::bad_request("InvalidSkipToken", "The $skiptoken query parameter is not valid.")
        })?),
    };
    let page_size = lock(&r.app.settings).page_size.max(1);
    let page = top.map_or(page_size, |t| t.min(page_size));
    let (value, last, more) = r.state(|st| -> Result<(Vec<Value>, Option<String>, bool), ArmError> {
        let g = st.group(sub, rg)?;
        let prefix = format!("{}/providers/", g.id().to_ascii_lowercase());
        let mut entries = st
            .resources
            .iter()
            .filter(|(k, res)| k.starts_with(&prefix) && res.names.len() == 1)
            .filter(|(k, _)| after.as_deref().is_none_or(|a| k.as_str() > a));
        let mut value = Vec::new();
        let mut last = None;
        for (k, res) in entries.by_ref().take(page) {
            value.push(res.render_generic());
            last = Some(k.clone());
        }
        let more = entries.next().is_some();
        Ok((value, last, more))
    })?;
    let mut body = json!({"value": value});
    if let (true, Some(last)) = (more, last) {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("api-version", &r.api_version);
        if let Some(t) = top {
            q.append_pair("$top", &t.to_string());
        }
        q.append_pair("$skiptoken", &encode_skiptoken(&last));
        body["nextLink"] =
            format!("{}/subscriptions/{sub}/resourceGroups/{rg}/resources?{}", r.app.endpoint, q.finish()).into();
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// An opaque continuation token: the last (lower-cased) resource id of the page, base64url.
fn encode_skiptoken(last_key: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last_key.as_bytes())
}

fn decode_skiptoken(token: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim().as_bytes()).ok()?;
    String::from_utf8(bytes).ok()
}

fn method_not_allowed(r: &Req<'_>) -> ArmError {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "UnsupportedHttpVerb",
        format!("The requested resource does not support http method '{}'.", r.method),
    )
}

// ---------------------------------------------------------------------------------------------
// Resources

async fn resource_request(r: &Req<'_>) -> Result<Response, ArmError> {
    let p = ResPath::parse(&r.segs).ok_or_else(|| not_routed(r))?;
    match (&p.tail, &r.method) {
        (None, &Method::GET) => get_resource(r, &p),
        (None, &Method::PUT) => {
            let body = r.json_body()?;
            put_resource(r, &p, body, false).await
        }
        (None, &Method::PATCH) => {
            let patch = r.json_body()?;
            let merged = r.state(|st| -> Result<Value, ArmError> {
                let g = st.group(&p.sub, &p.rg)?.clone();
                let class = kinds::classify(&p.namespace, &p.types);
                let parent = st.resolve_parent(&g, &p.namespace, &p.types, &p.names)?;
                let id = st.canonical_id(&g, &class, &p.names, parent.as_deref());
                let res = st.resources.get(&id.to_ascii_lowercase()).ok_or_else(|| resource_not_found(&p))?;
                let mut current = Value::Object(res.top.clone());
                if let Some(l) = &res.location {
                    current["location"] = l.clone().into();
                }
                let mut props = res.props.clone();
                props.extend(res.secrets.clone());
                current["properties"] = Value::Object(props);
                merge_patch(&mut current, &patch);
                Ok(current)
            })?;
            put_resource(r, &p, merged, true).await
        }
        (None, &Method::DELETE) => delete_resource(r, &p),
        (Some(action), &Method::POST) => post_action(r, &p, action),
        (Some(collection), &Method::GET) => list_collection(r, &p, collection),
        _ => Err(method_not_allowed(r)),
    }
}

fn resource_not_found(p: &ResPath) -> ArmError {
    ArmError::not_found(
        "ResourceNotFound",
        format!(
            "The Resource '{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            p.display(),
            p.rg
        ),
    )
}

/// RFC 7396 JSON merge patch (ARM PATCH semantics for tags and properties).
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn get_resource(r: &Req<'_>, p: &ResPath) -> Result<Response, ArmError> {
    let body = r.state(|st| -> Result<Value, ArmError> {
        let g = st.group(&p.sub, &p.rg)?.clone();
        let class = kinds::classify(&p.namespace, &p.types);
        let parent = st.resolve_parent(&g, &p.namespace, &p.types, &p.names)?;
        let id = st.canonical_id(&g, &class, &p.names, parent.as_deref());
        if let Some(res) = st.resources.get(&id.to_ascii_lowercase()) {
            return Ok(res.render());
        }
        // blobServices/default & co. exist with their account.
        if class.kind == Kind::StorageService
            && class.kind.validate_name(p.names.last().map(String::as_str).unwrap_or_default()).is_ok()
        {
            return Ok(json!({"id": id, "name": "default", "type": class.full_type(), "properties": {}}));
        }
        Err(resource_not_found(p))
    })?;
    Ok(json_response(StatusCode::OK, &body))
}

/// What a PUT will do, decided under the lock.
enum PutPlan {
    Create,
    Update,
}

/// PUT ("... - Create" / "... - Create Or Update") and PATCH ("... - Update", merged by the caller).
async fn put_resource(r: &Req<'_>, p: &ResPath, body: Value, is_patch: bool) -> Result<Response, ArmError> {
    let app = r.app;
    let class = kinds::classify(&p.namespace, &p.types);
    let kind = class.kind;
    let name = p.names.last().cloned().unwrap_or_default();
    let Some(obj) = body.as_object() else {
        return Err(ArmError::bad_request("InvalidRequestContent", "The request content must be a JSON object."));
    };
    let location = obj.get("location").and_then(Value::as_str).map(normalize_location).filter(|l| !l.is_empty());
    let props_in = match obj.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(ArmError::bad_request("InvalidRequestContent", "'properties' must be an object.")),
    };

    // Phase 1: validate, and create the container/queue in Azurite before recording it.
    let plan = r.state(|st| validate_put(st, p, &class, &name, location.as_deref()))?;
    if matches!(plan, PutPlan::Create)
        && let (Some(az), Some(service)) = (&app.azurite, azurite_service(kind))
    {
        az.create(service, &name.to_ascii_lowercase()).await.map_err(|e| {
            ArmError::new(
                StatusCode::BAD_GATEWAY,
                "StorageBackendError",
                format!("armsim could not create it in Azurite: {e}"),
            )
        })?;
    }

    // Phase 2: commit.
    let method = if is_patch { "PATCH" } else { "PUT" };
    let now = now_rfc3339();
    r.state(|st| {
        let plan = validate_put(st, p, &class, &name, location.as_deref())?;
        let g = st.group(&p.sub, &p.rg)?.clone();
        let parent = st.resolve_parent(&g, &p.namespace, &p.types, &p.names)?;
        let id = st.canonical_id(&g, &class, &p.names, parent.as_deref());
        let key = id.to_ascii_lowercase();

        let mut props = props_in.clone();
        let mut secrets = Map::new();
        for w in kind.write_only() {
            if let Some(v) = props.remove(*w) {
                secrets.insert((*w).to_string(), v);
            }
        }
        let mut top = obj.clone();
        for k in ["id", "name", "type", "location", "properties", "systemData", "etag"] {
            top.remove(k);
        }
        let names: Vec<String> = match st.resources.get(&key) {
            Some(existing) => existing.names.clone(),
            None => names_from_id(&id).filter(|n| n.len() == p.names.len()).unwrap_or_else(|| p.names.clone()),
        };
        let kind_field = top.get("kind").and_then(Value::as_str).map(str::to_string);
        let ctx = kinds::Ctx {
            subscription: &g.sub,
            names: &names,
            location: location.as_deref(),
            kind_field: kind_field.as_deref(),
            sent: &props,
            azurite: app.azurite.as_ref(),
            now: &now,
        };

        match plan {
            PutPlan::Create => {
                let computed = kinds::computed(kind, &ctx, None);
                let mut res = Resource {
                    id: id.clone(),
                    sub: g.sub.clone(),
                    rg: g.name.clone(),
                    class: class.clone(),
                    names: names.clone(),
                    location: location.clone(),
                    top,
                    props,
                    secrets,
                    computed,
                    keys: Keys::for_kind(kind, kind == Kind::StorageAccount && app.azurite.is_some()),
                    phase: Phase::Succeeded,
                    op: None,
                    tenant: r.principal.tenant.clone(),
                    principal_id: new_uuid(),
                    created_by: r.principal.client_id.clone(),
                    created_at: now.clone(),
                    modified_by: r.principal.client_id.clone(),
                    modified_at: now.clone(),
                };
                let answer = kind.contract().create;
                let mut op = None;
                if answer.is_async() {
                    let failure = lock(&app.faults).take_operation_fault(method, &r.path);
                    let op_id = st.start_op(
                        app.cfg.operation_time,
                        NewOp {
                            sub: &g.sub,
                            namespace: &class.namespace,
                            location: location.as_deref().unwrap_or("global"),
                            target: key.clone(),
                            action: OpAction::Create,
                            api_version: &r.api_version,
                            failure,
                        },
                    );
                    res.phase = Phase::Creating;
                    res.op = Some(op_id.clone());
                    op = Some(op_id);
                }
                let rendered = res.render();
                st.resources.insert(key.clone(), res);
                if kind == Kind::EventHubNamespace {
                    // Every namespace comes with the RootManageSharedAccessKey rule.
                    insert_root_rule(st, &id, &g, &names, &r.principal, &now);
                }
                let op = op.and_then(|o| st.ops.get(&o).cloned());
                Ok(write_answer(app, answer, Some(rendered), op.as_ref()))
            }
            PutPlan::Update => {
                let Some(res) = st.resources.get_mut(&key) else {
                    return Err(ArmError::internal("resource vanished during update"));
                };
                let previous = res.computed.clone();
                res.computed = kinds::computed(kind, &ctx, Some(&previous));
                res.top = top;
                res.props = props;
                // Write-only values persist unless replaced.
                for (k, v) in secrets {
                    res.secrets.insert(k, v);
                }
                res.modified_by = r.principal.client_id.clone();
                res.modified_at = now.clone();
                let (running, failed) = (res.op.clone(), res.phase == Phase::Failed);
                let contract = kind.contract();
                let running_action = running.as_ref().and_then(|o| st.ops.get(o)).map(|o| o.action);
                // A PUT while an operation runs joins it (idempotent retry); a PUT of a resource
                // whose creation failed starts the creation again; else it is an update.
                let (answer, start) = match running_action {
                    Some(OpAction::Create) => (contract.create.for_existing(), None),
                    Some(_) => (contract.update, None),
                    None if failed && contract.create.is_async() => {
                        (contract.create.for_existing(), Some((OpAction::Create, Phase::Creating)))
                    }
                    None if contract.update.is_async() => (contract.update, Some((OpAction::Update, Phase::Updating))),
                    None => (contract.update, None),
                };
                let mut op_id = running;
                if let Some((action, phase)) = start {
                    let failure = lock(&app.faults).take_operation_fault(method, &r.path);
                    let id = st.start_op(
                        app.cfg.operation_time,
                        NewOp {
                            sub: &g.sub,
                            namespace: &class.namespace,
                            location: location.as_deref().unwrap_or("global"),
                            target: key.clone(),
                            action,
                            api_version: &r.api_version,
                            failure,
                        },
                    );
                    if let Some(res) = st.resources.get_mut(&key) {
                        res.phase = phase;
                        res.op = Some(id.clone());
                    }
                    op_id = Some(id);
                } else if op_id.is_none()
                    && let Some(res) = st.resources.get_mut(&key)
                {
                    res.phase = Phase::Succeeded;
                }
                let rendered = st.resources.get(&key).map(Resource::render);
                let op = op_id.and_then(|o| st.ops.get(&o).cloned());
                Ok(write_answer(app, answer, rendered, op.as_ref()))
            }
        }
    })
}

/// The names along a canonical resource id (parents keep the casing they were created with).
fn names_from_id(id: &str) -> Option<Vec<String>> {
    let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    let rest = segs.get(6..)?;
    Some(rest.chunks(2).filter_map(|c| c.get(1).map(|s| s.to_string())).collect())
}

fn azurite_service(kind: Kind) -> Option<Service> {
    match kind {
        Kind::BlobContainer => Some(Service::Blob),
        Kind::Queue => Some(Service::Queue),
        _ => None,
    }
}

/// The checks every PUT makes, in ARM's order: group (ARM itself), then the provider's: parent,
/// name rules, location, global name, existing state.
fn validate_put(
    st: &State,
    p: &ResPath,
    class: &Classified,
    name: &str,
    location: Option<&str>,
) -> Result<PutPlan, ArmError> {
    let g = st.group(&p.sub, &p.rg)?;
    if g.deleting.is_some() {
        return Err(ArmError::conflict(
            "ResourceGroupBeingDeleted",
            format!("The resource group '{}' is in deprovisioning state and cannot perform this operation.", g.name),
        ));
    }
    let parent = st.resolve_parent(g, &p.namespace, &p.types, &p.names)?;
    class.kind.validate_name(name)?;
    if class.kind.tracked() && location.is_none() {
        return Err(ArmError::bad_request(
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    }
    let id = st.canonical_id(g, class, &p.names, parent.as_deref());
    let key = id.to_ascii_lowercase();
    if class.kind.globally_unique() {
        let taken = st
            .resources
            .iter()
            .any(|(k, r)| *k != key && r.kind() == class.kind && r.name().eq_ignore_ascii_case(name));
        if taken {
            return Err(class.kind.name_taken(name));
        }
    }
    match st.resources.get(&key) {
        None => Ok(PutPlan::Create),
        Some(existing) => {
            if existing.phase == Phase::Deleting {
                return Err(ArmError::conflict(
                    "AnotherOperationInProgress",
                    format!(
                        "Another operation (delete) is in progress on resource '{}'. Please retry after it completes.",
                        existing.name()
                    ),
                ));
            }
            if let (Some(old), Some(new)) = (&existing.location, location)
                && old != new
                && class.kind.tracked()
            {
                return Err(ArmError::conflict(
                    "InvalidResourceLocation",
                    format!(
                        "The resource '{}' already exists in location '{old}' in resource group '{}'. A resource with the same name cannot be created in location '{new}'. Please select a new resource name.",
                        existing.name(),
                        existing.rg
                    ),
                ));
            }
            Ok(PutPlan::Update)
        }
    }
}

/// The namespace-level `RootManageSharedAccessKey` authorization rule Event Hubs creates.
fn insert_root_rule(st: &mut State, ns_id: &str, g: &Group, ns_names: &[String], principal: &Principal, now: &str) {
    let class = kinds::classify("Microsoft.EventHub", &["namespaces".to_string(), "authorizationRules".to_string()]);
    let id = format!("{ns_id}/authorizationRules/RootManageSharedAccessKey");
    let mut names = ns_names.to_vec();
    names.push("RootManageSharedAccessKey".into());
    let mut props = Map::new();
    props.insert("rights".into(), json!(["Listen", "Manage", "Send"]));
    st.resources.insert(
        id.to_ascii_lowercase(),
        Resource {
            id,
            sub: g.sub.clone(),
            rg: g.name.clone(),
            class,
            names,
            location: None,
            top: Map::new(),
            props,
            secrets: Map::new(),
            computed: Map::new(),
            keys: Keys::for_kind(Kind::EventHubAuthRule, false),
            phase: Phase::Succeeded,
            op: None,
            tenant: principal.tenant.clone(),
            principal_id: new_uuid(),
            created_by: principal.client_id.clone(),
            created_at: now.to_string(),
            modified_by: principal.client_id.clone(),
            modified_at: now.to_string(),
        },
    );
}

/// DELETE, as the kind's contract says: synchronous kinds are removed at once (200, or 204 for
/// queues); long-running ones answer 202 with their monitors and disappear when the operation
/// completes. Missing: 204.
fn delete_resource(r: &Req<'_>, p: &ResPath) -> Result<Response, ArmError> {
    let app = r.app;
    let class = kinds::classify(&p.namespace, &p.types);
    r.state(|st| {
        let g = st.group(&p.sub, &p.rg)?.clone();
        let parent = match st.resolve_parent(&g, &p.namespace, &p.types, &p.names) {
            Ok(parent) => parent,
            // The parent is gone, so is the child.
            Err(_) => return Ok(empty_response(StatusCode::NO_CONTENT)),
        };
        let id = st.canonical_id(&g, &class, &p.names, parent.as_deref());
        let key = id.to_ascii_lowercase();
        let Some(res) = st.resources.get(&key).cloned() else {
            return Ok(empty_response(StatusCode::NO_CONTENT));
        };
        let answer = res.kind().contract().delete;
        if let Answer::Sync(status) = answer {
            st.remove_tree(&key);
            return Ok(empty_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK)));
        }
        let op_id = match (&res.op, res.phase) {
            (Some(op), Phase::Deleting) => op.clone(),
            _ => {
                let failure = lock(&app.faults).take_operation_fault("DELETE", &r.path);
                let op = st.start_op(
                    app.cfg.operation_time,
                    NewOp {
                        sub: &res.sub,
                        namespace: &res.class.namespace,
                        location: res.location.as_deref().unwrap_or("global"),
                        target: key.clone(),
                        action: OpAction::Delete,
                        api_version: &r.api_version,
                        failure,
                    },
                );
                if let Some(rm) = st.resources.get_mut(&key) {
                    rm.phase = Phase::Deleting;
                    rm.op = Some(op.clone());
                }
                op
            }
        };
        let op = st.ops.get(&op_id).cloned().ok_or_else(|| ArmError::internal("operation vanished"))?;
        Ok(write_answer(app, answer, None, Some(&op)))
    })
}

/// POST actions (`listKeys`, `regenerateKey`, `regenerateKeys`), synchronous 200.
fn post_action(r: &Req<'_>, p: &ResPath, action: &str) -> Result<Response, ArmError> {
    let body = r.json_body_or_empty()?;
    let class = kinds::classify(&p.namespace, &p.types);
    r.state(|st| {
        let g = st.group(&p.sub, &p.rg)?.clone();
        let parent = st.resolve_parent(&g, &p.namespace, &p.types, &p.names)?;
        let id = st.canonical_id(&g, &class, &p.names, parent.as_deref());
        let res = st.resources.get_mut(&id.to_ascii_lowercase()).ok_or_else(|| resource_not_found(p))?;
        let kind = res.kind();
        let names = res.names.clone();
        let created = res.created_at.clone();
        match kinds::action(kind, action, &names, res.keys.as_mut(), &body, &created)? {
            Some(v) => Ok(json_response(StatusCode::OK, &v)),
            None => Err(ArmError::not_found(
                "NotFound",
                format!("armsim does not implement the action '{action}' on '{}'.", res.class.full_type()),
            )),
        }
    })
}

/// `GET .../{type}` under a parent (e.g. "Blob Containers - List", "Event Hubs - List By Namespace").
fn list_collection(r: &Req<'_>, p: &ResPath, collection: &str) -> Result<Response, ArmError> {
    let mut types = p.types.clone();
    types.push(collection.to_string());
    let class = kinds::classify(&p.namespace, &types);
    let value = r.state(|st| -> Result<Vec<Value>, ArmError> {
        let g = st.group(&p.sub, &p.rg)?.clone();
        let mut names = p.names.clone();
        names.push(String::new());
        let parent = st.resolve_parent(&g, &p.namespace, &types, &names)?;
        let prefix = match parent {
            Some(pid) => format!("{pid}/{}/", class.types.last().map(String::as_str).unwrap_or_default()),
            None => format!("{}/providers/{}/{}/", g.id(), class.namespace, class.types.join("/")),
        }
        .to_ascii_lowercase();
        Ok(st
            .resources
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
            .map(|(_, res)| res.render())
            .collect())
    })?;
    Ok(json_response(StatusCode::OK, &json!({"value": value})))
}

// ---------------------------------------------------------------------------------------------
// Long-running operations

fn find_op(r: &Req<'_>, id: &str) -> Result<Operation, ArmError> {
    let sub = &r.segs[1];
    r.state(|st| {
        st.ops.get(id).filter(|o| o.sub.eq_ignore_ascii_case(sub)).cloned().ok_or_else(|| {
            ArmError::not_found("OperationNotFound", format!("The operation '{id}' could not be found."))
        })
    })
}

/// `GET .../operationStatuses/{id}` — the Azure-AsyncOperation status monitor: always 200 with
/// `{id, name, status, startTime, endTime?, percentComplete, error?}`.
fn operation_status(r: &Req<'_>) -> Result<Response, ArmError> {
    let op = find_op(r, &r.segs[7])?;
    let mut body = json!({
        "id": format!("/subscriptions/{}/providers/{}/locations/{}/operationStatuses/{}", op.sub, op.namespace, op.location, op.id),
        "name": op.id,
        "status": op.status(),
        "startTime": rfc3339(op.started_at),
    });
    if op.finished {
        body["endTime"] = op.end_time().into();
        body["percentComplete"] = 100.into();
    } else {
        let elapsed = jiff::Timestamp::now().as_millisecond() - op.started_at.as_millisecond();
        let pct = (elapsed as f64 / op.duration.as_millis().max(1) as f64 * 100.0).clamp(0.0, 99.0);
        body["percentComplete"] = (pct.floor() as u64).into();
    }
    if let Some((code, message)) = &op.failure
        && op.finished
    {
        body["error"] = json!({"code": code, "message": message});
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET .../operationResults/{id}` (and the resource-group `operationresults`) — the Location
/// monitor: 202 + Location + Retry-After while running; then the final answer (200 with the
/// resource for PUT, 204 for DELETE, 200 for resource-group deletion) or the error.
fn operation_result(r: &Req<'_>) -> Result<Response, ArmError> {
    let id = r.segs.last().cloned().unwrap_or_default();
    let op = find_op(r, &id)?;
    if !op.finished {
        let mut resp = empty_response(StatusCode::ACCEPTED);
        set_header(&mut resp, "location", &op.results_url(&r.app.endpoint));
        set_header(&mut resp, "retry-after", "1");
        return Ok(resp);
    }
    if let Some((code, message)) = &op.failure {
        return Err(ArmError::new(Operation::failure_status(code), code.clone(), message.clone()));
    }
    match op.action {
        OpAction::Create | OpAction::Update => {
            let body = r.state(|st| st.resources.get(&op.target).map(Resource::render));
            Ok(match body {
                Some(b) => json_response(StatusCode::OK, &b),
                None => empty_response(StatusCode::NO_CONTENT),
            })
        }
        OpAction::Delete => Ok(empty_response(StatusCode::NO_CONTENT)),
        OpAction::DeleteGroup => Ok(empty_response(StatusCode::OK)),
    }
}

// ---------------------------------------------------------------------------------------------
// Out-of-band operations used by the admin API

impl State {
    /// Deletes a resource (and children) or a whole resource group, immediately.
    pub fn admin_delete(&mut self, id: &str) -> bool {
        let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
        if segs.len() == 4
            && segs[0].eq_ignore_ascii_case("subscriptions")
            && segs[2].eq_ignore_ascii_case("resourcegroups")
        {
            return self.remove_group(&group_key(segs[1], segs[3]));
        }
        self.remove_tree(id.trim_end_matches('/').to_ascii_lowercase().as_str()) > 0
    }

    /// Rotates a resource's keys as `regenerateKey` would (`which`: primary, secondary, or both).
    pub fn admin_regenerate(&mut self, id: &str, which: Option<bool>) -> Result<Value, ArmError> {
        let key = id.trim_end_matches('/').to_ascii_lowercase();
        let res = self
            .resources
            .get_mut(&key)
            .ok_or_else(|| ArmError::not_found("ResourceNotFound", format!("No resource '{id}'.")))?;
        let kind = res.kind();
        let names = res.names.clone();
        let created = res.created_at.clone();
        let keys = res
            .keys
            .as_mut()
            .ok_or_else(|| ArmError::bad_request("NoKeys", format!("'{}' has no keys.", res.class.full_type())))?;
        keys.regenerate(kind, which)?;
        Ok(kinds::list_keys_body(kind, &names, keys, &created))
    }
}
