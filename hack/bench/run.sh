#!/usr/bin/env bash
# `make bench`: the per-reconcile micro-benchmarks, then the scale run (benches/scale) on a
# local control plane of its own (state in .local/bench/cluster, stopped at the end).
#
# The memory bench needs no cluster: bytes per cached object, from benches/fixtures.
#
#   make bench                                     1,000 stacks, 500 AzureResources
#   CITYSTACK_BENCH_ARGS="--stacks 10000 --azure 0" make bench
#
# Figures: one JSON line each, appended to .local/bench/results.jsonl; the run's table is
# printed and written to .local/bench/results.md. Nothing is asserted.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
export GOWORK=off GOTOOLCHAIN=local
target=${CARGO_TARGET_DIR:-target}

cargo bench --locked --bench reconcile
cargo bench --locked --bench memory
cargo build --release --locked --bin citystack
cargo bench --locked --bench scale --no-run

# Room for the bare client's pods and the operator's (3 per stack each), plus headroom.
stacks=$(printf '%s\n' ${CITYSTACK_BENCH_ARGS:-} | awk 'prev == "--stacks" {print; exit} {prev = $0}')
stacks=${stacks:-1000}
export CITYSTACK_NODES=${CITYSTACK_NODES:-4}
export CITYSTACK_NODE_PODS=${CITYSTACK_NODE_PODS:-$(( (stacks * 6 + 100) / CITYSTACK_NODES + 100 ))}

state="$repo/.local/bench/cluster"
export CITYSTACK_KUBECONFIG="$state/kubeconfig"
stop() { hack/cluster/down.sh "$state" >/dev/null 2>&1 || true; }
trap stop EXIT
stop
hack/cluster/up.sh "$state"

# shellcheck disable=SC2086 # word splitting of the extra arguments is intended
cargo bench --locked --bench scale -- --kubeconfig "$state/kubeconfig" \
  --operator "$target/release/citystack" --out "$repo/.local/bench/results.jsonl" ${CITYSTACK_BENCH_ARGS:-}
