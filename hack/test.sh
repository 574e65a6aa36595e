#!/usr/bin/env bash
# `make test`: unit and snapshot tests, then the integration tests against a fresh local
# control plane of their own (state in .local/test-cluster), stopped again at the end.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export INSTA_UPDATE=no GOWORK=off GOTOOLCHAIN=local

start=$(date +%s)
# Build the control plane (cached per machine) while cargo compiles: both are long when cold.
# Its output goes to a log, shown if it fails, so it does not interleave with cargo's.
mkdir -p .local
hack/cluster/build.sh >.local/cluster-build.log 2>&1 &
build_pid=$!
hack/helm/build.sh >.local/helm-build.log 2>&1 &
helm_pid=$!
cargo build --locked --all-targets
cargo test --locked --lib --bins
echo "waiting for the control-plane build (log: .local/cluster-build.log)"
if ! wait "$build_pid"; then
  tail -40 .local/cluster-build.log
  exit 1
fi
grep 'control plane built' .local/cluster-build.log || true
if ! wait "$helm_pid"; then
  tail -40 .local/helm-build.log
  exit 1
fi

# GitOps health: the Argo CD Lua checks in gopher-lua and kstatus over the testdata, and the
# helper the integration tests run on live objects.
(cd hack/health && go test -count=1 ./... && go build -o "$repo/.local/bin/kstatus" ./cmd/kstatus)
export CITYSTACK_HEALTH_BIN="$repo/.local/bin/kstatus"

state="$repo/.local/test-cluster"
export CITYSTACK_KUBECONFIG="$state/kubeconfig"
stop() { hack/cluster/down.sh "$state" >/dev/null 2>&1 || true; }
trap stop EXIT
stop
hack/cluster/up.sh "$state"
export CITYSTACK_TEST_KUBECONFIG="$state/kubeconfig"

# Azurite (the Storage emulator behind the ARM simulator's storage accounts) and the official
# Python blob client, to prove a projected connection string works.
azurite_state="$repo/.local/test-azurite"
stop_all() { stop; hack/azurite/down.sh "$azurite_state" >/dev/null 2>&1 || true; }
trap stop_all EXIT
eval "$(hack/azurite/up.sh "$azurite_state")"
if [ ! -x .local/venv/bin/python ] || ! .local/venv/bin/python -c 'import azure.storage.blob' 2>/dev/null; then
  python3 -m venv .local/venv
  .local/venv/bin/pip install --quiet --disable-pip-version-check -r hack/python/requirements.txt
fi
export CITYSTACK_PYTHON="$repo/.local/venv/bin/python"

# The ARM simulator's own contract tests, including the official Azure SDK against it and
# (now that Azurite runs) its storage backed by Azurite.
cargo test --locked -p armsim
# Microsoft's official Python management clients as the referee of the simulator's contract.
.local/venv/bin/pip install --quiet --disable-pip-version-check -r hack/python/requirements.txt
.local/venv/bin/python -m pytest -q -p no:cacheprovider hack/armsim/tests/python

# The operator image, assembled without a Docker daemon from the debug binary built above
# (stripped; `make image` does the same from a release build) and checked as a runtime would
# run it. Seconds, no cluster.
PYTHON="$repo/.local/venv/bin/python" hack/image/test.sh "${CARGO_TARGET_DIR:-target}/debug/citystack" "$repo/.local/image"

# The Helm chart: lint, server-side dry runs, install, RBAC verb by verb, CRD upgrade. It
# leaves the release installed and writes a kubeconfig for the chart's ServiceAccount.
hack/chart-test.sh "$state/kubeconfig" "$repo/.local/chart-operator.kubeconfig"

# Every operator the integration tests start runs as the chart's ServiceAccount, so each
# request is authorised by the chart's RBAC exactly as in a Pod: a missing verb fails a test.
export CITYSTACK_OPERATOR_KUBECONFIG="$repo/.local/chart-operator.kubeconfig"
export CITYSTACK_LEASE_NAMESPACE=citystack-system
cargo test --locked --test integration -- --test-threads="${CITYSTACK_TEST_THREADS:-4}"
echo "make test: passed in $(( $(date +%s) - start ))s"
