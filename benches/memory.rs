//! `make bench` (memory): the bytes each object keeps in the stack controller's caches, and
//! so per stack of the scale bench's fleet (3 Deployments, 2 Services, the stack, a tenth of
//! a Secret's metadata).
//!
//! Each figure puts N distinct copies of an object, as the API server serves it
//! (`benches/fixtures/*.json`, taken from a `make bench` fleet), into a kube reflector store
//! the way the controller's watches do (parsed from the wire text, stripped where the
//! controller strips), and reads jemalloc's count of allocated bytes (size classes included,
//! what the process pays) before and after. The typed, unstripped object is measured too, as
//! the cost a plain kube-rs controller would pay.

use std::fmt::Write as _;

use citystack::api::SolutionStack;
use citystack::stack::CachedStack;
use citystack::stack::index::Index;
use citystack::stack::lean::Lean;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::Value;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Copies of each object: enough that allocator noise is well under a byte per object.
const COPIES: usize = 5_000;

fn main() {
    let deployment = fixture(include_str!("fixtures/deployment.json"));
    let service = fixture(include_str!("fixtures/service.json"));
    let stack = fixture(include_str!("fixtures/solutionstack.json"));
    let secret = fixture(include_str!("fixtures/secret-metadata.json"));

    let mut rows = Vec::new();
    let lean_deployment = per_object::<Lean<Deployment>>(&deployment, |_| {});
    let lean_service = per_object::<Lean<Service>>(&service, |_| {});
    let lean_stack = per_stack_object(&stack);
    let secret_meta = per_object::<PartialObjectMeta<Secret>>(&secret, citystack::reconciler::strip);
    rows.push(("Deployment (lean)", lean_deployment, 3.0));
    rows.push(("Service (lean)", lean_service, 2.0));
    rows.push(("SolutionStack (lean, with its index entry)", lean_stack, 1.0));
    rows.push(("Secret metadata (stripped)", secret_meta, 0.1));
    let per_stack: f64 = rows.iter().map(|(_, bytes, n)| bytes * n).sum();
    let typed = 3.0 * per_object::<Deployment>(&deployment, |_| {})
        + 2.0 * per_object::<Service>(&service, |_| {})
        + per_object::<SolutionStack>(&stack, |_| {})
        + 0.1 * per_object::<PartialObjectMeta<Secret>>(&secret, |_| {});

    let mut table = String::from("| cached object | bytes each | per stack |\n|---|---|---|\n");
    for (name, bytes, n) in &rows {
        let _ = writeln!(table, "| {name} | {bytes:.0} | x{n} |");
    }
    let _ = writeln!(table, "| one stack with its children | {per_stack:.0} | = {:.1} MB per 1,000 stacks |", per_stack / 1e3);
    let _ = writeln!(table, "| the same, typed and unstripped | {typed:.0} | = {:.1} MB per 1,000 stacks |", typed / 1e3);
    print!("{table}");
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fixture: {e}"))
}

/// Wire text of copy `i` of `object`: its own name, UID and resourceVersion, as distinct
/// objects have.
fn copy(object: &Value, i: usize) -> String {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let name = metadata.get("name").and_then(Value::as_str).unwrap_or("x").to_owned();
        metadata.insert("name".into(), format!("{name}-{i}").into());
        metadata.insert("uid".into(), format!("6f0c{i:08x}-9b1e-4c55-8d1a-51f0c3a2b7e4").into());
        metadata.insert("resourceVersion".into(), format!("{}", 4_000_000 + i).into());
    }
    object.to_string()
}

/// Bytes one object of kind `K` keeps in a reflector store (`modify` is the watch's own
/// `.modify` step).
fn per_object<K>(object: &Value, modify: impl Fn(&mut K)) -> f64
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + 'static,
{
    let texts: Vec<String> = (0..COPIES).map(|i| copy(object, i)).collect();
    let before = allocated();
    let (store, mut writer) = reflector::store::<K>();
    for text in &texts {
        let mut parsed: K = serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: {e}", K::kind(&())));
        modify(&mut parsed);
        writer.apply_watcher_event(&watcher::Event::Apply(parsed));
    }
    let bytes = allocated().saturating_sub(before) as f64 / COPIES as f64;
    keep(&store);
    bytes
}

/// Like [`per_object`] for stacks, whose watch also feeds the reference index.
fn per_stack_object(object: &Value) -> f64 {
    let texts: Vec<String> = (0..COPIES).map(|i| copy(object, i)).collect();
    let before = allocated();
    let (store, mut writer) = reflector::store::<CachedStack>();
    let index = Index::default();
    for text in &texts {
        let parsed: CachedStack = serde_json::from_str(text).unwrap_or_else(|e| panic!("SolutionStack: {e}"));
        let event = watcher::Event::Apply(parsed);
        index.observe(&Ok(event.clone()));
        writer.apply_watcher_event(&event);
    }
    let bytes = allocated().saturating_sub(before) as f64 / COPIES as f64;
    keep(&store);
    drop(index);
    bytes
}

/// Keeps the store alive until after the measurement.
fn keep<K: Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>) {
    assert_eq!(store.state().len(), COPIES);
}

/// jemalloc's `stats.allocated`, refreshed.
fn allocated() -> usize {
    let _ = tikv_jemalloc_ctl::epoch::advance();
    tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0)
}
