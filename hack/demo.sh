#!/usr/bin/env bash
# `make demo`: build what is needed, start the local control plane, Azurite and the ARM
# simulator (the examples' Azure bindings are provisioned there instead of in Azure), start
# the operator pointed at the simulator, apply examples/, wait until every stack is Ready,
# and leave it all running.
# `make down` (this script with `down`) stops the operator, the simulator, Azurite and the
# control plane.
#
# CITYSTACK_DEMO_NAMESPACES (comma-separated, default: all) limits the namespaces the
# operator watches, for a cluster shared with other operators (e.g. integration tests whose
# AzureResources must not be reconciled against the demo's simulator too).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export GOWORK=off GOTOOLCHAIN=local
local_dir="$repo/.local"
state="$local_dir/cluster"
kubeconfig="$local_dir/kubeconfig"
pidfile="$local_dir/operator.pid"
log="$local_dir/operator.log"
azurite_state="$local_dir/azurite"
armsim_state="$local_dir/armsim"
armsim_pidfile="$local_dir/armsim.pid"
armsim_log="$local_dir/armsim.log"
# The examples' credential Secrets name this client id (the operator accepts only GUIDs).
armsim_client_id=5d2e8c1a-9b7f-4e3d-a6c5-0f1e2d3c4b5a
target_dir=${CARGO_TARGET_DIR:-target}

# Stops the process in a pid file, but only if that pid still runs the named program: after
# a crash or reboot the number may belong to something unrelated.
stop_pid() { # pidfile program
  local pid
  if [ -f "$1" ] && pid=$(cat "$1") && kill -0 "$pid" 2>/dev/null &&
    [ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -1 | xargs -r basename)" = "$2" ]; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}
stop_operator() { stop_pid "$pidfile" citystack; }
stop_armsim() { stop_pid "$armsim_pidfile" armsim; }

if [ "${1:-}" = down ]; then
  # The operator first (it talks to both), then the simulator and its storage, then the
  # control plane.
  stop_operator
  stop_armsim
  hack/azurite/down.sh "$azurite_state"
  hack/cluster/down.sh "$state"
  echo "demo stopped"
  exit 0
fi

start=$(date +%s)
bin=$(hack/cluster/build.sh)
kubectl=("$bin/kubectl" --kubeconfig "$kubeconfig")
cargo build --locked --bin citystack
cargo build --locked -p armsim
CITYSTACK_KUBECONFIG="$kubeconfig" hack/cluster/up.sh "$state"
ready_at=$(date +%s)

"${kubectl[@]}" apply --server-side --force-conflicts -f crds/
"${kubectl[@]}" wait --for=condition=Established --timeout=60s -f crds/

# Azurite backs the simulated storage accounts (blob containers and queues really exist);
# up.sh reuses an Azurite that is still running and prints its endpoints either way.
# (An assignment, so a failing up.sh stops the script.)
azurite_env=$(hack/azurite/up.sh "$azurite_state")
eval "$azurite_env"

# The simulator holds the demo's Azure side in memory, so like the cluster and Azurite it is
# reused while it runs: a second `make demo` finds the stacks' resources where they were. It
# is started afresh when it is not running, its binary was rebuilt, or Azurite moved; stacks
# from an earlier run then find their resources gone and the operator creates them again.
# Port 0 and a CA generated at every start: the endpoint and ca.pem it writes are what the
# operator is given.
armsim_current() {
  local pid
  [ -f "$armsim_pidfile" ] && [ -s "$armsim_state/endpoint" ] && [ -s "$armsim_state/ca.pem" ] || return 1
  pid=$(cat "$armsim_pidfile")
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$target_dir/debug/armsim")" ] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--azurite-blob $ARMSIM_AZURITE_BLOB " &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--client-id $armsim_client_id "
}
stop_operator
if ! armsim_current; then
  stop_armsim
  rm -f "$armsim_state/endpoint" "$armsim_state/ca.pem"
  nohup "$target_dir/debug/armsim" --listen 127.0.0.1:0 --state-dir "$armsim_state" \
    --azurite-blob "$ARMSIM_AZURITE_BLOB" --azurite-queue "$ARMSIM_AZURITE_QUEUE" \
    --azurite-table "$ARMSIM_AZURITE_TABLE" --client-id "$armsim_client_id" >"$armsim_log" 2>&1 </dev/null &
  echo $! >"$armsim_pidfile"
  for _ in $(seq 150); do
    [ -s "$armsim_state/endpoint" ] && [ -s "$armsim_state/ca.pem" ] && break
    kill -0 "$(cat "$armsim_pidfile")" 2>/dev/null || { echo "armsim exited:"; tail -20 "$armsim_log"; exit 1; }
    sleep 0.2
  done
  if [ ! -s "$armsim_state/endpoint" ] || [ ! -s "$armsim_state/ca.pem" ]; then
    echo "armsim wrote no endpoint within 30s; see $armsim_log"
    exit 1
  fi
fi
arm=$(cat "$armsim_state/endpoint")
echo "armsim running (pid $(cat "$armsim_pidfile"), $arm, log $armsim_log)"

# The simulator serves both Entra ID and ARM, over HTTPS with its own CA. Each example
# namespace brings its credential (the citystack-azure Secret), so the operator needs no
# identity of its own.
nohup "$target_dir/debug/citystack" run --kubeconfig "$kubeconfig" --admin-addr 127.0.0.1:0 \
  --namespaces "${CITYSTACK_DEMO_NAMESPACES:-}" \
  --azure-cloud custom --azure-arm-endpoint "$arm" --azure-authority-host "$arm" \
  --azure-ca-bundle "$armsim_state/ca.pem" >"$log" 2>&1 </dev/null &
echo $! >"$pidfile"
admin=""
for _ in $(seq 300); do
  admin=$(grep -o 'admin server listening on [0-9.:]*' "$log" | awk '{print $NF}' | head -1 || true)
  [ -n "$admin" ] && curl -fs "http://$admin/readyz" >/dev/null 2>&1 && break
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "operator exited:"; tail -20 "$log"; exit 1; }
  sleep 0.2
done
echo "operator running (pid $(cat "$pidfile"), admin http://$admin, log $log)"

applied=$(date +%s)
"${kubectl[@]}" apply -f examples/
# The partner catalog: six blueprints and their instances in three cities' namespaces.
"${kubectl[@]}" apply -f examples/blueprints/
# Only the examples' stacks are waited for: the cluster may hold others that are meant not to
# be Ready. They turn Ready once their Azure resources are provisioned in the simulator and
# the components using them have rolled out.
stacks=$("${kubectl[@]}" get -f examples/ -f examples/blueprints/ -o jsonpath='{range .items[?(@.kind=="SolutionStack")]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}')
for stack in $stacks; do
  "${kubectl[@]}" wait --for=condition=Ready -n "${stack%/*}" "solutionstack/${stack#*/}" --timeout=300s
done
done_at=$(date +%s)
"${kubectl[@]}" get solutionblueprints
"${kubectl[@]}" get solutionstacks,azureresources -A
echo
echo "control plane up in $((ready_at - start))s; examples Ready $((done_at - applied))s after apply; total $((done_at - start))s"
echo "Everything keeps running. Try:"
echo "  export KUBECONFIG=$kubeconfig PATH=$bin:\$PATH"
echo "  kubectl get solutionstacks,azureresources,deployments,services -A"
echo "  curl --cacert $armsim_state/ca.pem $arm/_admin/resources   # what the simulator holds"
echo "Stop it with: make down"
