#!/usr/bin/env bash
# Starts a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) plus kwok for fake nodes, all as plain processes on 127.0.0.1.
#
#   hack/cluster/up.sh [STATE_DIR]      default STATE_DIR: <repo>/.local/cluster
#
# Writes an admin kubeconfig to <repo>/.local/kubeconfig (override: CITYSTACK_KUBECONFIG)
# and to STATE_DIR/kubeconfig. Ports are random free loopback ports unless set through
# CITYSTACK_{ETCD_CLIENT,ETCD_PEER,APISERVER,KCM,SCHEDULER}_PORT. Deadline per phase:
# CITYSTACK_UP_TIMEOUT seconds (default 120). Fake nodes: CITYSTACK_NODES (default 2), each
# with room for CITYSTACK_NODE_PODS pods (default 110, the kubelet's default; `make bench`
# raises it). CITYSTACK_KWOK_PORT, when set, makes kwok serve /metrics and /debug/pprof on
# that loopback port (for profiling the fake nodes under a bench). Stop with
# hack/cluster/down.sh [STATE_DIR].
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${1:-$repo/.local/cluster}
mkdir -p "$state"
state=$(cd "$state" && pwd)
kubeconfig_out=${CITYSTACK_KUBECONFIG:-$repo/.local/kubeconfig}
timeout=${CITYSTACK_UP_TIMEOUT:-120}
node_count=${CITYSTACK_NODES:-2}
node_pods=${CITYSTACK_NODE_PODS:-110}
started_at=$(date +%s.%N)

# Order matters: down.sh and failure cleanup stop them in reverse.
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { echo "up.sh: $*" >&2; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started_at" "$(date +%s.%N)"; }

bin=$("$here/build.sh")
kubectl="$bin/kubectl"

# A pid file is trusted only if that pid is still the binary we started: after a reboot
# or a crash the number may belong to an unrelated process we must not report or kill.
alive() {
  local name=$1 pid
  [ -f "$state/$name.pid" ] || return 1
  pid=$(cat "$state/$name.pid")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | head -1 | grep -qx "$bin/$name"
}

# For a daemon this run started: it is our child, so its pid cannot be reused before we reap
# it, and checking it does not depend on the exec chain (setsid, nohup, binary) having
# finished, which on a loaded machine it may not have. A zombie is a daemon that exited.
declare -A started=()
running() {
  local pid=${started[$1]:-}
  [ -n "$pid" ] || { alive "$1"; return; }
  [ -r "/proc/$pid/stat" ] || return 1
  [ "$(cut -d' ' -f3 "/proc/$pid/stat")" != Z ]
}

# Fails naming why a daemon we started is gone: its exit status, or the signal that ended
# it. `wait` must run in this shell (not a command substitution) to reap our own child.
gone() { # name while...
  local name=$1 pid=${started[$1]:-} rc=0 how=exited; shift
  if [ -n "$pid" ]; then
    wait "$pid" 2>/dev/null || rc=$?
    how="exited with status $rc"
    [ "$rc" -le 128 ] || how="was killed by signal $((rc - 128))"
  fi
  fail "$name" "$name $how $*"
}

apiserver_ready() {
  "$kubectl" --kubeconfig "$state/kubeconfig" --request-timeout=5s get --raw=/readyz >/dev/null 2>&1
}

# Shared by the "already up?" check and the final wait, so both mean the same thing:
# every node Ready with no taints, and the serviceaccount controller has run.
cluster_usable() {
  local kc=("$kubectl" --kubeconfig "$state/kubeconfig" --request-timeout=5s) out
  out=$("${kc[@]}" get nodes -o 'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}/{.spec.taints}{"\n"}{end}' 2>/dev/null) || return 1
  [ "$(printf '%s\n' "$out" | grep -c '^kwok-node-[0-9]*=True/$')" = "$node_count" ] || return 1
  "${kc[@]}" -n default get serviceaccount default >/dev/null 2>&1
}

stop_all() {
  # down.sh owns the TERM/deadline/KILL logic; KEEP_STATE leaves logs for the post-mortem.
  CITYSTACK_KEEP_STATE=1 "$here/down.sh" "$state" >/dev/null 2>&1 || true
}

fail() {
  local name=$1; shift
  log "FAILED: $*"
  if [ -f "$state/$name.log" ]; then
    log "last lines of $state/$name.log:"
    tail -n 40 "$state/$name.log" >&2
  fi
  stop_all
  log "stopped all components; logs kept in $state (hack/cluster/down.sh removes them)"
  exit 1
}

# Polls instead of sleeping a fixed time, and fails fast when the process already died,
# so a broken flag shows up in seconds with its log rather than after the full deadline.
wait_for() {
  local name=$1 what=$2 check=$3 deadline=$(( $(date +%s) + timeout ))
  until $check; do
    running "$name" || gone "$name" "while waiting for $what"
    [ "$(date +%s)" -lt "$deadline" ] || fail "$name" "$what not reached within ${timeout}s"
    sleep 0.2
  done
  log "$what ($(elapsed)s)"
}

# ---------------------------------------------------------------- idempotency
any_pid=false; all_alive=true
for c in "${components[@]}"; do
  [ -f "$state/$c.pid" ] && any_pid=true
  alive "$c" || all_alive=false
done
# Leftovers without pid files (a failed start keeps its logs and etcd data) also count:
# reusing that etcd data under freshly generated keys would be a half-old cluster.
if $any_pid || [ -e "$state/ports.env" ] || [ -d "$state/etcd" ]; then
  if $all_alive && apiserver_ready && cluster_usable; then
    [ "$state/kubeconfig" -ef "$kubeconfig_out" ] || { mkdir -p "$(dirname "$kubeconfig_out")"; cp "$state/kubeconfig" "$kubeconfig_out"; }
    log "cluster in $state is already up and healthy"
    echo "export KUBECONFIG=$kubeconfig_out"
    exit 0
  fi
  # Partially dead clusters are not repaired in place: a fresh start is quicker to reason
  # about than reconciling certs/ports/etcd data against whatever survived.
  log "stale or unhealthy cluster in $state; wiping it and starting fresh"
  "$here/down.sh" "$state" >&2
  mkdir -p "$state"
fi

# ---------------------------------------------------------------- ports
# Random ports let several clusters (and CI jobs) share one machine. All sockets are held
# open together so the kernel never hands out the same port twice; the small window
# between close and the daemon's bind is accepted.
read -r p_etcd p_peer p_api p_kcm p_sched < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)
p_etcd=${CITYSTACK_ETCD_CLIENT_PORT:-$p_etcd}
p_peer=${CITYSTACK_ETCD_PEER_PORT:-$p_peer}
p_api=${CITYSTACK_APISERVER_PORT:-$p_api}
p_kcm=${CITYSTACK_KCM_PORT:-$p_kcm}
p_sched=${CITYSTACK_SCHEDULER_PORT:-$p_sched}
cat >"$state/ports.env" <<EOF
ETCD_CLIENT_PORT=$p_etcd
ETCD_PEER_PORT=$p_peer
APISERVER_PORT=$p_api
KCM_PORT=$p_kcm
SCHEDULER_PORT=$p_sched
EOF

# ---------------------------------------------------------------- PKI
pki="$state/pki"
mkdir -p "$pki"
# openssl chatters on stderr even on success, so its output goes to a file that is shown
# only if a step fails (the subshell's set -e exit trips the ERR trap here).
trap 'log "PKI generation failed:"; cat "$pki/openssl.log" >&2' ERR
(
  cd "$pki"
  # ECDSA P-256 in PKCS#8 form: generating the six RSA keys took ~1.5 s of every start,
  # and PKCS#8 "BEGIN PRIVATE KEY" parses in client-go, rustls and openssl alike.
  keygen() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
  keygen ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=citystack-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out ca.crt

  # Leaf certs need explicit v3 extensions: Go and rustls ignore the CN for hostname
  # checks and reject certificates whose extendedKeyUsage does not match the role.
  leaf() { # name subject extensions
    keygen "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
      -extfile "$1.ext" -out "$1.crt"
    rm -f "$1.csr" "$1.ext"
  }
  # 10.96.0.1 and the kubernetes.default names are what in-cluster clients dial.
  leaf apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  leaf admin "/O=system:masters/CN=citystack-admin" "extendedKeyUsage=clientAuth"
  # Each component gets its own identity so the audit log attributes writes to whoever
  # made them and tests can count the operator's writes without background noise.
  # The CNs are the ones the bootstrap RBAC policy already binds.
  leaf kube-controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  leaf kube-scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  leaf kwok "/O=system:masters/CN=kwok-controller" "extendedKeyUsage=clientAuth"
  # Signs and verifies ServiceAccount tokens (apiserver issues, kcm mints legacy ones).
  # RSA because RS256 is what every token verifier supports.
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
  chmod 600 ./*.key
) 2>"$pki/openssl.log"
trap - ERR

# Embedded data rather than file paths so the kubeconfig keeps working if copied elsewhere
# (a container, another checkout) and does not break when pki/ is regenerated.
write_kubeconfig() { # path user
  local b64="base64 -w0"
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: citystack
  cluster:
    server: https://127.0.0.1:$p_api
    certificate-authority-data: $($b64 <"$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $($b64 <"$pki/$2.crt")
    client-key-data: $($b64 <"$pki/$2.key")
contexts:
- name: citystack
  context:
    cluster: citystack
    user: $2
current-context: citystack
EOF
  chmod 600 "$1"
}
write_kubeconfig "$state/kubeconfig" admin
for c in kube-controller-manager kube-scheduler kwok; do
  write_kubeconfig "$pki/$c.kubeconfig" "$c"
done

# Only writes are audited: tests count mutations per user, and logging reads/watches would
# bury them (and slow the apiserver). RequestReceived is omitted so each request is one line.
cat >"$state/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
EOF

# ---------------------------------------------------------------- processes
# setsid+nohup detach each daemon from this shell's session and terminal so it survives
# up.sh exiting and Ctrl-C in the caller's terminal. setsid execs in place here (we are not
# a process-group leader), so $! is the daemon's own pid.
start() { # name args...
  local name=$1; shift
  : >"$state/$name.log"
  setsid nohup "$bin/$name" "$@" </dev/null >>"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
  started[$name]=$!
}

# Plain HTTP on loopback: only this machine can reach it and it saves an etcd PKI.
# --unsafe-no-fsync: the data is disposable and fsync dominates apiserver write latency
# on CI disks.
start etcd \
  --name=citystack \
  --data-dir="$state/etcd" \
  --listen-client-urls="http://127.0.0.1:$p_etcd" \
  --advertise-client-urls="http://127.0.0.1:$p_etcd" \
  --listen-peer-urls="http://127.0.0.1:$p_peer" \
  --initial-advertise-peer-urls="http://127.0.0.1:$p_peer" \
  --initial-cluster="citystack=http://127.0.0.1:$p_peer" \
  --unsafe-no-fsync=true
wait_for etcd "etcd healthy" "curl -fs --max-time 2 http://127.0.0.1:$p_etcd/health -o /dev/null"

# --advertise-address: otherwise the apiserver advertises the host's default-route IP,
# which does not exist on offline machines and is not where we listen anyway.
# --allow-privileged: as on kubeadm/kind clusters, so Pod Security admission (not this flag)
# is what rejects privileged pods and tests see the same errors as in production.
# --endpoint-reconciler-type=none: the "kubernetes" Service cannot get a loopback endpoint
# (Endpoints validation rejects 127.0.0.0/8) and no real pod ever dials it here.
# ShardedListAndWatch (alpha, KEP-5866): list and watch take a shardSelector, which sharded
# operator replicas use; it changes nothing for clients that do not send one.
start kube-apiserver \
  --feature-gates=ShardedListAndWatch=true \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$p_api" \
  --etcd-servers="http://127.0.0.1:$p_etcd" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --authorization-mode=Node,RBAC \
  --allow-privileged=true \
  --service-cluster-ip-range=10.96.0.0/16 \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --endpoint-reconciler-type=none \
  --audit-policy-file="$state/audit-policy.yaml" \
  --audit-log-path="$state/audit.log" \
  --audit-log-format=json \
  --audit-log-mode=blocking \
  --cert-dir="$pki/apiserver-generated"
wait_for kube-apiserver "kube-apiserver /readyz ok" apiserver_ready

# --use-service-account-credentials: each controller acts as its own SA with the bootstrap
# RBAC roles, exactly like a kubeadm cluster, so RBAC mistakes surface here too.
# --root-ca-file feeds the kube-root-ca.crt ConfigMap that SA token volumes project.
# --cluster-signing-*: lets CertificateSigningRequests be signed, as on real clusters.
# --kube-api-qps/burst: at the default 20 qps, minting ~40 controller ServiceAccounts and
# tokens throttles startup by ~5 s before the serviceaccount/node controllers even run.
# --leader-elect=false: single instance; leases would only add audit noise and startup delay.
# No --authentication/authorization-kubeconfig (here or for the scheduler): /healthz is
# always allowed anyway, and with them both daemons log an error loop about the
# front-proxy CA this apiserver deliberately does not configure.
kcm_kc="$pki/kube-controller-manager.kubeconfig"
start kube-controller-manager \
  --kubeconfig="$kcm_kc" \
  --bind-address=127.0.0.1 \
  --secure-port="$p_kcm" \
  --cert-dir="$pki/kcm-generated" \
  --leader-elect=false \
  --kube-api-qps=200 \
  --kube-api-burst=400 \
  --use-service-account-credentials=true \
  --root-ca-file="$pki/ca.crt" \
  --service-account-private-key-file="$pki/sa.key" \
  --cluster-signing-cert-file="$pki/ca.crt" \
  --cluster-signing-key-file="$pki/ca.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --controllers='*'

# The system default topology spreading (by zone and by hostname, for every pod a Service or
# ReplicaSet selects) is switched off: fake nodes have no zones and no real placement, and
# its scoring counts every matching pod on every node for each pod scheduled, which with a
# few thousand pods per fake node took 70 % of the scheduler's CPU and capped a 30,000-pod
# bench at ~20 pods a second. The client limits match the controller manager's.
sched_kc="$pki/kube-scheduler.kubeconfig"
cat >"$state/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: "$sched_kc"
  qps: 200
  burst: 400
leaderElection:
  leaderElect: false
profiles:
- schedulerName: default-scheduler
  pluginConfig:
  - name: PodTopologySpread
    args:
      defaultingType: List
EOF
start kube-scheduler \
  --config="$state/kube-scheduler.yaml" \
  --bind-address=127.0.0.1 \
  --secure-port="$p_sched" \
  --cert-dir="$pki/scheduler-generated"

# The kwok binary has no built-in stages (kwokctl normally injects them), so we pass the
# upstream defaults from kwok/stages.yaml. KWOK_WORKDIR keeps a developer's
# ~/.kwok/kwok.yaml from being merged in. The lease duration makes kwok renew node Leases,
# which is what the node lifecycle controller treats as the heartbeat. No --node-port, and
# --server-address only when asked for, so by default kwok opens no port of its own.
kwok_serve=()
[ -z "${CITYSTACK_KWOK_PORT:-}" ] || kwok_serve=(--server-address="127.0.0.1:$CITYSTACK_KWOK_PORT")
KWOK_WORKDIR="$state/kwok-workdir" start kwok ${kwok_serve[@]+"${kwok_serve[@]}"} \
  --kubeconfig="$pki/kwok.kubeconfig" \
  --config="$here/kwok/stages.yaml" \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds=40 \
  --cidr=10.244.0.0/16 \
  --node-ip=127.0.0.1

wait_for kube-controller-manager "kube-controller-manager /healthz ok" \
  "curl -fsk --max-time 2 https://127.0.0.1:$p_kcm/healthz -o /dev/null"
wait_for kube-scheduler "kube-scheduler /healthz ok" \
  "curl -fsk --max-time 2 https://127.0.0.1:$p_sched/healthz -o /dev/null"

# ---------------------------------------------------------------- nodes
# Registered as kwok-controller, not citystack-admin, so the admin user's audit trail
# starts empty for tests. No taints: ordinary pods must schedule without tolerations.
nodes=""
for i in $(seq 0 $((node_count - 1))); do
  nodes+="---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    type: kwok
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
spec: {}
status:
  allocatable: {cpu: \"1000\", memory: 4Ti, pods: \"$node_pods\"}
  capacity: {cpu: \"1000\", memory: 4Ti, pods: \"$node_pods\"}
"
done
printf '%s' "$nodes" | "$kubectl" --kubeconfig "$pki/kwok.kubeconfig" apply -f - >/dev/null \
  || fail kube-apiserver "could not register the kwok nodes"

# Blame kwok when this times out: it is what marks nodes Ready; the taint removal and the
# default ServiceAccount come from the controller-manager, whose log is also worth a look.
wait_for kwok "nodes Ready and untainted, default ServiceAccount present" cluster_usable

for c in "${components[@]}"; do
  running "$c" || gone "$c" "during startup"
done

if ! [ "$state/kubeconfig" -ef "$kubeconfig_out" ]; then
  mkdir -p "$(dirname "$kubeconfig_out")"
  cp "$state/kubeconfig" "$kubeconfig_out"
fi
log "cluster ready in $(elapsed)s: https://127.0.0.1:$p_api (state: $state)"
echo "export KUBECONFIG=$kubeconfig_out"
