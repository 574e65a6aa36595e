#!/usr/bin/env bash
# `make demo`: build what is needed, start the local control plane and the operator, apply
# examples/, wait until every stack is Ready, and leave it all running.
# `make down` (this script with `down`) stops the operator and the control plane.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export GOWORK=off GOTOOLCHAIN=local
local_dir="$repo/.local"
state="$local_dir/cluster"
kubeconfig="$local_dir/kubeconfig"
pidfile="$local_dir/operator.pid"
log="$local_dir/operator.log"

stop_operator() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill -TERM "$(cat "$pidfile")"
    for _ in $(seq 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

if [ "${1:-}" = down ]; then
  stop_operator
  hack/cluster/down.sh "$state"
  echo "demo stopped"
  exit 0
fi

start=$(date +%s)
bin=$(hack/cluster/build.sh)
kubectl=("$bin/kubectl" --kubeconfig "$kubeconfig")
cargo build --locked --bin citystack
CITYSTACK_KUBECONFIG="$kubeconfig" hack/cluster/up.sh "$state"
ready_at=$(date +%s)

"${kubectl[@]}" apply --server-side --force-conflicts -f crds/
"${kubectl[@]}" wait --for=condition=Established --timeout=60s -f crds/

stop_operator
nohup "${CARGO_TARGET_DIR:-target}/debug/citystack" run --kubeconfig "$kubeconfig" --admin-addr 127.0.0.1:0 >"$log" 2>&1 &
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
"${kubectl[@]}" wait --for=condition=Ready solutionstacks --all -A --timeout=300s
done_at=$(date +%s)
"${kubectl[@]}" get solutionstacks -A
echo
echo "control plane up in $((ready_at - start))s; examples Ready $((done_at - applied))s after apply; total $((done_at - start))s"
echo "Everything keeps running. Try:"
echo "  export KUBECONFIG=$kubeconfig PATH=$bin:\$PATH"
echo "  kubectl get solutionstacks,deployments,services -A"
echo "Stop it with: make down"
