#!/usr/bin/env bash
# Starts Azurite (the Azure Storage emulator, npm azurite@3.35.0) on loopback and prints its
# endpoints as shell exports:
#
#   eval "$(hack/azurite/up.sh .state/azurite)"
#   # export ARMSIM_AZURITE_BLOB=http://127.0.0.1:PORT/devstoreaccount1
#   # export ARMSIM_AZURITE_QUEUE=http://127.0.0.1:PORT/devstoreaccount1
#   # export ARMSIM_AZURITE_TABLE=http://127.0.0.1:PORT/devstoreaccount1
#
# Azurite is installed once per machine into ${CITYSTACK_CACHE:-$HOME/.cache/citystack}/azurite/3.35.0
# (3.35.0 is the newest release whose engines allow Node.js 20). Ports are chosen by the OS
# (--blobPort 0 etc.; Azurite logs the ports it bound). STATE_DIR gets azurite.pid, azurite.log
# and azurite.env (the exports above). Running it again while Azurite is up re-prints the exports.
# Stop with hack/azurite/down.sh STATE_DIR. Data is in memory only.
set -euo pipefail

state_dir=${1:?usage: $0 STATE_DIR}
version=3.35.0
cache=${CITYSTACK_CACHE:-$HOME/.cache/citystack}/azurite/$version
entry=$cache/node_modules/azurite/dist/src/azurite.js

command -v node >/dev/null || { echo "up.sh: node (Node.js >= 18) is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "up.sh: npm is required" >&2; exit 1; }

mkdir -p "$state_dir"
state_dir=$(cd "$state_dir" && pwd)
pidfile=$state_dir/azurite.pid
log=$state_dir/azurite.log
envfile=$state_dir/azurite.env

# Install once. Into a temporary folder first, then renamed, so a half-finished install is never used.
if [ ! -f "$entry" ]; then
  mkdir -p "$(dirname "$cache")"
  tmp=$(mktemp -d "$cache.tmp.XXXXXX")
  echo "up.sh: installing azurite@$version into $cache" >&2
  if ! npm install --prefix "$tmp" --no-audit --no-fund --no-save --ignore-scripts --loglevel=error "azurite@$version" >&2; then
    rm -rf "$tmp"
    echo "up.sh: npm install azurite@$version failed" >&2
    exit 1
  fi
  # Another process may have won the race: keep theirs.
  mv -T "$tmp" "$cache" 2>/dev/null || rm -rf "$tmp"
fi

# Already running for this state dir?
if [ -f "$pidfile" ] && [ -f "$envfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  cat "$envfile"
  exit 0
fi
rm -f "$pidfile" "$envfile"

: >"$log"
nohup node "$entry" \
  --silent --inMemoryPersistence --skipApiVersionCheck --disableTelemetry \
  --blobHost 127.0.0.1 --blobPort 0 \
  --queueHost 127.0.0.1 --queuePort 0 \
  --tableHost 127.0.0.1 --tablePort 0 \
  >>"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"

# Azurite prints "Azurite Blob service is successfully listening at http://127.0.0.1:PORT" (also
# with --silent, which only silences the access log).
listening() { sed -n "s#.*Azurite $1 service is successfully listening at \(http://[^ ]*\).*#\1#p" "$log" | tail -n 1; }
blob="" queue="" table=""
for _ in $(seq 1 300); do
  blob=$(listening Blob) queue=$(listening Queue) table=$(listening Table)
  [ -n "$blob" ] && [ -n "$queue" ] && [ -n "$table" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "up.sh: azurite exited; log follows ($log)" >&2
    cat "$log" >&2
    rm -f "$pidfile"
    exit 1
  fi
  sleep 0.1
done
if [ -z "$blob" ] || [ -z "$queue" ] || [ -z "$table" ]; then
  echo "up.sh: azurite did not report its ports within 30s; see $log" >&2
  kill "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  exit 1
fi

cat >"$envfile" <<ENV
export ARMSIM_AZURITE_BLOB=${blob%/}/devstoreaccount1
export ARMSIM_AZURITE_QUEUE=${queue%/}/devstoreaccount1
export ARMSIM_AZURITE_TABLE=${table%/}/devstoreaccount1
ENV
cat "$envfile"
