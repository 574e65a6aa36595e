#!/usr/bin/env bash
# Stops the Azurite started by hack/azurite/up.sh STATE_DIR (only that process, by its pid file).
set -euo pipefail

state_dir=${1:?usage: $0 STATE_DIR}
pidfile=$state_dir/azurite.pid
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")

# Only signal the process if it still is our Azurite (pids get reused).
if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q azurite; then
  kill "$pid"
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
fi
rm -f "$pidfile" "$state_dir/azurite.env"
