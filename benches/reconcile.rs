//! `make bench`: the pure, per-reconcile work: rendering a stack and checking every child
//! for drift against its live object. A steady-state resync of N stacks costs about N times
//! (render + drift) plus cache lookups, and no API requests.

use divan::black_box;
use serde_json::Value;

const STACKS: [&str; 3] = [
    include_str!("../examples/smart-transport.yaml"),
    include_str!("../examples/smart-education.yaml"),
    include_str!("../examples/smart-health.yaml"),
];

fn main() {
    divan::main();
}

/// Offline render of the three examples (parse + validate + render + YAML).
#[divan::bench]
fn render_examples() -> usize {
    STACKS.iter().map(|s| citystack::stack::render::render_documents(black_box(s)).map(|y| y.len()).unwrap_or(0)).sum()
}

/// Drift check of a rendered Deployment against a live copy with server defaults added.
#[divan::bench]
fn drift_check(bencher: divan::Bencher) {
    let rendered = citystack::stack::render::render_documents(STACKS[0]).unwrap_or_default();
    let desired: Value = serde_yaml_ng::Deserializer::from_str(&rendered)
        .next()
        .and_then(|d| serde::Deserialize::deserialize(d).ok())
        .unwrap_or(Value::Null);
    let mut observed = desired.clone();
    if let Some(spec) = observed.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("progressDeadlineSeconds".into(), 600.into());
        spec.insert("revisionHistoryLimit".into(), 10.into());
    }
    bencher.bench(|| citystack::stack::drift::converged(black_box(&desired), black_box(&observed)));
}
