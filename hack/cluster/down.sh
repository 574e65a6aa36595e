#!/usr/bin/env bash
# Stops the local control plane started by up.sh and deletes its state (etcd data, PKI,
# logs, audit log). Exits 0 when nothing was running.
#
#   hack/cluster/down.sh [STATE_DIR]     default STATE_DIR: <repo>/.local/cluster
#
# CITYSTACK_KEEP_STATE=1 stops the processes but keeps the files (up.sh uses it on failure
# so the logs survive for inspection).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${1:-$repo/.local/cluster}
kubeconfig_out=${CITYSTACK_KUBECONFIG:-$repo/.local/kubeconfig}
grace=${CITYSTACK_DOWN_TIMEOUT:-20}

if [ ! -d "$state" ]; then
  echo "down.sh: nothing at $state" >&2
  exit 0
fi
state=$(cd "$state" && pwd)

# Reverse start order: clients go before the apiserver, the apiserver before etcd, so
# nothing spends its shutdown retrying a dependency that is already gone.
components=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)

# Only signal a pid that still runs a binary from our cache (the pid file may be stale and
# the number reused by something unrelated). The match is on the program name because
# the bin dir is not known here without running build.sh.
ours() { # pid name
  [ -r "/proc/$1/cmdline" ] || return 1
  tr '\0' '\n' <"/proc/$1/cmdline" | head -1 | grep -q "/$2\$"
}

# One at a time, each fully gone before the next gets TERM: signalled together, etcd
# exits first and the apiserver's graceful shutdown then hangs on storage until KILL.
stopped=0
for c in "${components[@]}"; do
  f="$state/$c.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  { [ -n "$pid" ] && ours "$pid" "$c"; } || continue
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(date +%s) + grace ))
  while ours "$pid" "$c" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
  if ours "$pid" "$c"; then
    echo "down.sh: $c ($pid) ignored TERM for ${grace}s, sending KILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    # KILL is asynchronous; wait so a following up.sh can reuse the ports and data.
    for _ in $(seq 50); do ours "$pid" "$c" || break; sleep 0.1; done
  fi
  stopped=$((stopped + 1))
done
if [ "$stopped" = 0 ]; then
  echo "down.sh: no running components in $state" >&2
else
  echo "down.sh: stopped $stopped component(s) in $state" >&2
fi

if [ "${CITYSTACK_KEEP_STATE:-0}" = 1 ]; then
  rm -f "$state"/*.pid
  exit 0
fi

# The shared kubeconfig is removed only if it points at this cluster, so stopping a
# second cluster in another STATE_DIR does not break the default one's kubeconfig.
if [ -f "$state/kubeconfig" ] && [ -f "$kubeconfig_out" ] && cmp -s "$state/kubeconfig" "$kubeconfig_out"; then
  rm -f "$kubeconfig_out"
fi
# Delete exactly what up.sh creates, then the folder if that emptied it: a mistyped
# STATE_DIR (say $HOME) must not be wiped wholesale.
for c in "${components[@]}"; do rm -f "$state/$c.pid" "$state/$c.log"; done
rm -rf "$state/etcd" "$state/pki" "$state/kwok-workdir"
rm -f "$state/kubeconfig" "$state/ports.env" "$state/audit-policy.yaml" "$state"/audit*.log
rmdir "$state" 2>/dev/null || echo "down.sh: left unknown files in $state" >&2
echo "down.sh: removed cluster state in $state" >&2
