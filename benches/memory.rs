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

#[allow(dead_code)]
#[path = "scale/report.rs"]
mod report;

use std::path::Path;

use citystack::api::SolutionStack;
use citystack::stack::CachedStack;
use citystack::stack::index::Index;
use citystack::stack::lean::Lean;
use citystack::stack::owned::Owned;
use citystack::stack::render::ChildKind;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::Value;

use report::Report;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Copies of each object: enough that allocator noise is well under a byte per object.
const COPIES: usize = 5_000;

fn main() {
    // A stack's three Deployments and two Services, its own object and a bound Secret.
    let deployment = fixtures(include_str!("fixtures/deployments.json"));
    let service = fixtures(include_str!("fixtures/services.json"));
    let stack = fixtures(&format!("[{}]", include_str!("fixtures/solutionstack.json")));
    let secret = fixtures(&format!("[{}]", include_str!("fixtures/secret-metadata.json")));

    let lean = [
        per_child::<Lean<Deployment>>(&deployment, ChildKind::Deployment),
        per_child::<Lean<Service>>(&service, ChildKind::Service),
        per_stack_object(&stack),
        per_object::<PartialObjectMeta<Secret>>(&secret, citystack::reconciler::strip, |_| {}),
    ];
    let typed = [
        per_object::<Deployment>(&deployment, |_| {}, |_| {}),
        per_object::<Service>(&service, |_| {}, |_| {}),
        per_object::<SolutionStack>(&stack, |_| {}, |_| {}),
        per_object::<PartialObjectMeta<Secret>>(&secret, |_| {}, |_| {}),
    ];
    // The scale bench's fleet: 3 Deployments, 2 Services, the stack, a Secret per 10 stacks.
    let per_stack = |bytes: &[f64; 4]| 3.0 * bytes[0] + 2.0 * bytes[1] + bytes[2] + 0.1 * bytes[3];

    let run = "cache";
    let mut report = Report::new(Path::new(".local/bench/results.jsonl"));
    report.add(
        run,
        "cache_bytes_deployment",
        lean[0],
        "bytes",
        "a Deployment in the stack controller's cache, with its index entry",
    );
    report.add(run, "cache_bytes_service", lean[1], "bytes", "a Service in the cache, with its index entry");
    report.add(
        run,
        "cache_bytes_stack",
        lean[2],
        "bytes",
        "a SolutionStack in the cache, with its reference-index entry",
    );
    report.add(run, "cache_bytes_secret", lean[3], "bytes", "a Secret's metadata in the cache");
    report.add(
        run,
        "cache_mb_per_1000_stacks",
        per_stack(&lean) / 1e3,
        "MB",
        "caches for 1,000 stacks of the bench fleet",
    );
    report.add(
        run,
        "cache_mb_per_1000_stacks_typed",
        per_stack(&typed) / 1e3,
        "MB",
        "the same objects typed and unstripped, as a plain kube-rs controller caches them",
    );
    print!("{}", report.table());
}

fn fixtures(text: &str) -> Vec<Value> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fixture: {e}"))
}

/// Wire text of copy `i` of the objects (taken in turn): its own name, UID and
/// resourceVersion, as distinct objects have.
fn copy(objects: &[Value], i: usize) -> String {
    let mut object = objects[i % objects.len()].clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let name = metadata.get("name").and_then(Value::as_str).unwrap_or("x").to_owned();
        metadata.insert("name".into(), format!("{name}-{i}").into());
        metadata.insert("uid".into(), format!("6f0c{i:08x}-9b1e-4c55-8d1a-51f0c3a2b7e4").into());
        metadata.insert("resourceVersion".into(), format!("{}", 4_000_000 + i).into());
        // Each set of copies has its own stack.
        let stack = i / objects.len();
        for owner in metadata.get_mut("ownerReferences").and_then(Value::as_array_mut).into_iter().flatten() {
            owner["uid"] = format!("91f1{stack:08x}-eefa-4ced-8ce2-c9d9bfabfa57").into();
        }
    }
    object.to_string()
}

/// Bytes one object of kind `K` keeps in a reflector store and in what its watch feeds
/// (`modify` is the watch's own `.modify` step; `observe` its `inspect`, e.g. an index).
fn per_object<K>(objects: &[Value], modify: impl Fn(&mut K), observe: impl Fn(&watcher::Event<K>)) -> f64
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + 'static,
{
    let texts: Vec<String> = (0..COPIES).map(|i| copy(objects, i)).collect();
    let before = allocated();
    let (store, mut writer) = reflector::store::<K>();
    for text in &texts {
        let mut parsed: K = serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: {e}", K::kind(&())));
        modify(&mut parsed);
        let event = watcher::Event::Apply(parsed);
        observe(&event);
        writer.apply_watcher_event(&event);
    }
    let bytes = allocated().saturating_sub(before) as f64 / COPIES as f64;
    keep(&store);
    bytes
}

/// [`per_object`] for a stack's children, whose watches also feed the index of what each
/// stack controls.
fn per_child<K>(objects: &[Value], kind: ChildKind) -> f64
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + 'static,
{
    let owned = Owned::default();
    let bytes = per_object::<K>(objects, |_| {}, |event| owned.observe(kind, &Ok(event.clone())));
    assert_eq!(owned.len(), COPIES);
    bytes
}

/// [`per_object`] for stacks, whose watch also feeds the reference index.
fn per_stack_object(objects: &[Value]) -> f64 {
    let index = Index::default();
    per_object::<CachedStack>(objects, |_| {}, |event| index.observe(&Ok(event.clone())))
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
