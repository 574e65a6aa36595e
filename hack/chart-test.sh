#!/usr/bin/env bash
# Tests the Helm chart charts/citystack against a running cluster.
#
#   hack/chart-test.sh [KUBECONFIG] [OUT_KUBECONFIG]
#
# KUBECONFIG (default .local/kubeconfig): an admin kubeconfig of the cluster.
# OUT_KUBECONFIG (default .local/chart-operator.kubeconfig): written at the end, authenticated
# as the chart's ServiceAccount (a 2 h token from the TokenRequest API), for running the
# operator out of cluster with exactly the chart's RBAC.
#
# Steps: crds/ copy check, helm lint, offline render checks, each azure.* value rendered
# alone lands as exactly its `citystack run` flag (and the binary accepts them all), the
# Workload Identity annotation and label, the rendered RBAC against the permission tables of
# README.md and the chart README (hack/chart-rbac.py), server-side dry-run of both RBAC
# modes, install of release `citystack` into citystack-system (PodSecurity restricted
# enforced; an existing release is upgraded instead), Deployment/PDB/PodSecurity checks, RBAC
# verb-by-verb checks with `kubectl auth can-i` (cluster-wide release, then a namespaced one
# in citystack-chart-test-*, uninstalled again), the crds.templated=true path (on a copy of
# the CRD renamed to group chart-test.citystack.io, deleted again), the documented CRD upgrade
# path (a new field, server-side apply, helm upgrade, then the original CRD back), the
# ServiceAccount kubeconfig. Closes with "chart-test: N passed, N failed"; exit 1 on a failure.
#
# The release stays installed (the SA token stays valid) unless CHART_TEST_CLEANUP=1, which
# uninstalls it and deletes the test namespaces at the end. The CRD is never deleted.
# Environment: KUBECTL (default: the pinned kubectl of hack/cluster/build.sh), HELM (default:
# hack/helm/build.sh), CITYSTACK_CACHE (where those are built), CITYSTACK_BIN (the citystack
# binary that must accept the rendered flags; default $CARGO_TARGET_DIR/debug/citystack).
set -euo pipefail
here=$(pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$here/$1" ;; esac; }
admin_kubeconfig=$(abspath "${1:-$repo/.local/kubeconfig}")
out_kubeconfig=$(abspath "${2:-$repo/.local/chart-operator.kubeconfig}")
cd "$repo"
[ -f "$admin_kubeconfig" ] || { echo "chart-test: no kubeconfig at $admin_kubeconfig" >&2; exit 2; }
export KUBECONFIG=$admin_kubeconfig

release=citystack
ns=citystack-system
sa=citystack
chart=charts/citystack
# The namespaced-mode release and the namespaces it watches (test fixtures).
ns_release=citystack-ns
ns_release_ns=citystack-chart-test-system
watched=(citystack-chart-test-a citystack-chart-test-b)
unwatched=citystack-chart-test-c
image=(--set image.repository=citystack --set image.tag=dev)
# The release `make test` runs every integration test's operator as must allow the union of
# what they do, so it has an operator identity and trusted namespaces (the only values that
# widen the RBAC: a Namespace list). The namespaced release keeps the narrow default.
wide=(--set azure.identity=managed --set azure.trustedNamespaces=citystack.io/azure=trusted)

helm=${HELM:-$(hack/helm/build.sh)}
kubectl=${KUBECTL:-$(hack/cluster/build.sh)/kubectl}
work=$(mktemp -d)
# Helm's own config, cache and repositories stay out of $HOME.
export HELM_CONFIG_HOME=$work/helm/config HELM_CACHE_HOME=$work/helm/cache HELM_DATA_HOME=$work/helm/data
crd_modified=0 test_crd_created=0
finish() {
  local rc=$?
  if [ "$crd_modified" = 1 ]; then
    echo "chart-test: restoring the original CRD" >&2
    "$kubectl" apply --server-side --force-conflicts -f crds/ >/dev/null || true
  fi
  if [ "$test_crd_created" = 1 ]; then
    "$helm" uninstall citystack-tmpl -n citystack-chart-test-system >/dev/null 2>&1 || true
    "$kubectl" delete crd solutionstacks.chart-test.citystack.io azureresources.chart-test.citystack.io solutionblueprints.chart-test.citystack.io --ignore-not-found >/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap finish EXIT

passed=0 failed=0
step() { printf '\n== %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf '  ok    %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf '  FAIL  %s\n' "$1"; [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/        /'; }
# check DESCRIPTION COMMAND...: one test; its output is shown only when it fails.
check() {
  local desc=$1 output; shift
  if output=$("$@" 2>&1); then ok "$desc"; else bad "$desc" "$output"; fi
}
# refuses DESCRIPTION PATTERN COMMAND...: the command must fail with PATTERN in its output.
refuses() {
  local desc=$1 pattern=$2 output; shift 2
  if output=$("$@" 2>&1); then bad "$desc (was accepted)" "$output"
  elif grep -qF -- "$pattern" <<<"$output"; then ok "$desc"
  else bad "$desc (failed otherwise)" "$output"; fi
}
# A file's text contains / lacks a fixed string.
has() { grep -qF -- "$2" "$1"; }
lacks() { ! grep -qF -- "$2" "$1"; }
ensure_ns() { # NAME [LABEL=VALUE...]
  local name=$1; shift
  "$kubectl" create namespace "$name" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
  [ $# -eq 0 ] || "$kubectl" label namespace "$name" --overwrite "$@" >/dev/null
}
restricted=(pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted)

echo "chart-test: helm $("$helm" version --short), kubectl $("$kubectl" version --client -o json | grep -m1 gitVersion | cut -d'"' -f4), cluster $(
  "$kubectl" config view --minify -o jsonpath='{.clusters[0].cluster.server}')"

step "the chart README carries the Argo CD health snippet of hack/argocd/argocd-cm.yaml"
snippet=$(sed -n '/^<!-- argocd-health-snippet/,/^<!-- end argocd-health-snippet/p' "$chart/README.md" | sed '1,2d;$d' | sed '$d')
if [ "$snippet" = "$(cat hack/argocd/argocd-cm.yaml)" ]; then ok "README snippet matches hack/argocd/argocd-cm.yaml"
else bad "charts/citystack/README.md: the argocd-cm snippet differs from hack/argocd/argocd-cm.yaml; paste it again"; fi

step "charts/citystack/crds is a copy of crds/"
if output=$(diff -r crds "$chart/crds" 2>&1); then ok "crds/ and $chart/crds/ hold the same files"
else
  bad "crds/ and $chart/crds/ differ: run  rm -rf $chart/crds && cp -r crds $chart/crds" "$(head -n 20 <<<"$output")"
fi

step "helm lint"
check "lint (all namespaces)" "$helm" lint --strict "$chart"
check "lint (watchNamespaces set)" "$helm" lint --strict "$chart" --set "watchNamespaces={team-a,team-b}"
check "lint (crds.templated, serviceMonitor, workload identity)" "$helm" lint --strict "$chart" \
  --set crds.templated=true --set serviceMonitor.enabled=true \
  --set azure.identity=workload --set azure.workloadIdentity.clientId=00000000-0000-0000-0000-000000000000
check "lint (client secret, trusted namespaces, custom cloud, CA bundle)" "$helm" lint --strict "$chart" \
  --set azure.identity=client-secret --set azure.clientSecret.existingSecret=citystack-azure \
  --set azure.trustedNamespaces=citystack.io/azure=trusted --set azure.cloud=custom \
  --set azure.armEndpoint=https://arm.example --set azure.authorityHost=https://login.example \
  --set azure.caBundle.configMap=azure-ca

step "offline render"
render() { "$helm" template "$release" "$chart" -n "$ns" "${image[@]}" "$@"; }
render >"$work/cluster.yaml"
render --set "watchNamespaces={${watched[0]},${watched[1]}}" >"$work/namespaced.yaml"
# kind/name/namespace of every object, one line each, for the assertions below.
objects() { awk '/^kind: /{k=$2} /^  name: /{if (k) {n=$2; k2=k; k=""; getline l; ns=""; if (l ~ /^  namespace: /) {split(l, a, ": "); ns=a[2]}; print k2 "/" n (ns ? " -n " ns : "")}}' "$1"; }
objects "$work/cluster.yaml" >"$work/cluster.objects"
objects "$work/namespaced.yaml" >"$work/namespaced.objects"
check "cluster-wide: ClusterRole and ClusterRoleBinding citystack" \
  bash -c "grep -qx 'ClusterRole/citystack' $work/cluster.objects && grep -qx 'ClusterRoleBinding/citystack' $work/cluster.objects"
check "cluster-wide: no --namespaces flag" lacks "$work/cluster.yaml" "--namespaces"
check "cluster-wide: leases only in a Role of $ns" \
  bash -c "[ \$(grep -c 'coordination.k8s.io' $work/cluster.yaml) = 1 ] && grep -qx 'Role/citystack-leader-election -n $ns' $work/cluster.objects"
check "namespaced: --namespaces ${watched[0]},${watched[1]}" has "$work/namespaced.yaml" "\"${watched[0]},${watched[1]}\""
check "namespaced: a Role and RoleBinding in each watched namespace" bash -c "
  for n in ${watched[*]}; do grep -qx \"Role/citystack -n \$n\" $work/namespaced.objects && grep -qx \"RoleBinding/citystack -n \$n\" $work/namespaced.objects || exit 1; done"
check "namespaced: the only ClusterRole is citystack-selfcheck (selfsubjectaccessreviews)" bash -c "
  [ \"\$(grep '^ClusterRole/' $work/namespaced.objects)\" = ClusterRole/citystack-selfcheck ] &&
  [ \"\$(grep '^ClusterRoleBinding/' $work/namespaced.objects)\" = ClusterRoleBinding/citystack-selfcheck ]"
render --show-only templates/deployment.yaml >"$work/deployment.yaml"
args=$("$kubectl" create --dry-run=client -o jsonpath='{.spec.template.spec.containers[0].args}' -f "$work/deployment.yaml")
# shellcheck disable=SC2016 # $(POD_NAMESPACE) is literal: the kubelet expands it.
want='["run","--leader-elect","--lease-name","citystack","--lease-namespace","$(POD_NAMESPACE)","--admin-addr","0.0.0.0:8080","--log-format","json","--concurrency","4","--resync","300"]'
check "Deployment args: citystack run ${want}" test "$args" = "$want"
check "sharding.enabled: --shard in place of --leader-elect" bash -c "
  '$helm' template $release $chart -n $ns ${image[*]} --set sharding.enabled=true --show-only templates/deployment.yaml |
    grep -q -- '- --shard' && ! '$helm' template $release $chart -n $ns ${image[*]} --set sharding.enabled=true --show-only templates/deployment.yaml | grep -q -- --leader-elect"
check "image citystack:dev" has "$work/cluster.yaml" 'image: "citystack:dev"'
check "no ServiceMonitor by default" lacks "$work/cluster.yaml" "kind: ServiceMonitor"
check "ServiceMonitor when enabled and the API exists" bash -c "
  '$helm' template $release $chart --set serviceMonitor.enabled=true --api-versions monitoring.coreos.com/v1/ServiceMonitor | grep -q 'kind: ServiceMonitor'"
check "no ServiceMonitor when enabled but the API is absent" bash -c "
  ! '$helm' template $release $chart --set serviceMonitor.enabled=true | grep -q 'kind: ServiceMonitor'"
check "no PodDisruptionBudget with 1 replica" bash -c "
  ! '$helm' template $release $chart --set replicaCount=1 | grep -q 'kind: PodDisruptionBudget'"

step "azure.* values become citystack run flags"
# args_of VALUES...: the container args of the Deployment rendered with VALUES (JSON array).
args_of() {
  "$helm" template "$release" "$chart" -n "$ns" "${image[@]}" --show-only templates/deployment.yaml "$@" |
    "$kubectl" create --dry-run=client -o jsonpath='{.spec.template.spec.containers[0].args}' -f -
}
# flags DESCRIPTION EXTRA_ARGS_JSON VALUES...: rendered with VALUES, the args are exactly the
# default ones followed by EXTRA_ARGS_JSON (a comma-separated JSON list body): the value lands
# as its flag, and nothing else is added.
flags() {
  local desc=$1 extra=$2 got; shift 2
  if ! got=$(args_of "$@" 2>&1); then bad "$desc" "$got"; return; fi
  if [ "$got" = "${want%]},$extra]" ]; then ok "$desc"; else bad "$desc" "got:  $got"$'\n'"want: ${want%]},$extra]"; fi
}
guid=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
flags "identity managed: --azure-identity managed" '"--azure-identity","managed"' --set azure.identity=managed
flags "identity none: --azure-identity none" '"--azure-identity","none"' --set azure.identity=none
flags "identity workload: --azure-identity workload" '"--azure-identity","workload"' \
  --set azure.identity=workload --set azure.workloadIdentity.clientId=$guid
flags "identity client-secret: --azure-identity client-secret" '"--azure-identity","client-secret"' \
  --set azure.identity=client-secret --set azure.clientSecret.existingSecret=sp
flags "trustedNamespaces: --trusted-namespaces" '"--azure-identity","managed","--trusted-namespaces","citystack.io/azure=trusted"' \
  --set azure.identity=managed --set azure.trustedNamespaces=citystack.io/azure=trusted
flags "subscriptionId: --azure-subscription-id" "\"--azure-subscription-id\",\"$guid\"" --set azure.subscriptionId=$guid
flags "cloud azure-china: --azure-cloud azure-china" '"--azure-cloud","azure-china"' --set azure.cloud=azure-china
flags "cloud azure-us-government: --azure-cloud azure-us-government" '"--azure-cloud","azure-us-government"' \
  --set azure.cloud=azure-us-government
flags "cloud custom: --azure-cloud custom, --azure-arm-endpoint, --azure-authority-host" \
  '"--azure-cloud","custom","--azure-arm-endpoint","https://arm.example","--azure-authority-host","https://login.example"' \
  --set azure.cloud=custom --set azure.armEndpoint=https://arm.example --set azure.authorityHost=https://login.example
flags "armEndpoint alone (overrides the cloud's): --azure-arm-endpoint" '"--azure-arm-endpoint","https://arm.example"' \
  --set azure.armEndpoint=https://arm.example
flags "authorityHost alone: --azure-authority-host" '"--azure-authority-host","https://login.example"' \
  --set azure.authorityHost=https://login.example
flags "audience: --azure-audience" '"--azure-audience","https://arm.example/"' --set azure.audience=https://arm.example/
flags "caBundle.configMap: --azure-ca-bundle at the mounted file" \
  '"--azure-ca-bundle","/etc/citystack/azure-ca/ca-bundle.pem"' --set azure.caBundle.configMap=azure-ca
flags "operationDeadlineSeconds: --azure-operation-deadline" '"--azure-operation-deadline","1800"' \
  --set azure.operationDeadlineSeconds=1800
flags "resyncSeconds: --azure-resync" '"--azure-resync","7200"' \
  --set azure.resyncSeconds=7200
flags "budgetPercent: --azure-budget-percent" '"--azure-budget-percent","50"' \
  --set azure.budgetPercent=50
check "no --azure-* or --trusted-namespaces flag by default" bash -c "! grep -qE -- '--(azure-|trusted-)' '$work/deployment.yaml'"
# jsonpath_of TEMPLATE JSONPATH VALUES...: one field of one rendered template.
jsonpath_of() {
  local template=$1 path=$2; shift 2
  "$helm" template "$release" "$chart" -n "$ns" "${image[@]}" --show-only "templates/$template" "$@" |
    "$kubectl" create --dry-run=client -o jsonpath="$path" -f -
}
# equals WANT COMMAND...: the command's output is WANT.
equals() {
  local want=$1 got; shift
  got=$("$@") || return 1
  [ "$got" = "$want" ] || { printf 'got:  %s\nwant: %s\n' "$got" "$want"; return 1; }
}
check "caBundle: the ConfigMap's key is mounted read-only as the file the flag names" \
  equals 'azure-ca:bundle.pem>ca-bundle.pem /etc/citystack/azure-ca true' \
  jsonpath_of deployment.yaml '{.spec.template.spec.volumes[0].configMap.name}:{.spec.template.spec.volumes[0].configMap.items[0].key}>{.spec.template.spec.volumes[0].configMap.items[0].path} {.spec.template.spec.containers[0].volumeMounts[0].mountPath} {.spec.template.spec.containers[0].volumeMounts[0].readOnly}' \
  --set azure.caBundle.configMap=azure-ca --set azure.caBundle.key=bundle.pem
check "no volumes by default" equals "" jsonpath_of deployment.yaml '{.spec.template.spec.volumes}'
# The operator itself accepts every flag and value the chart renders (clap refuses an
# unknown flag or value with exit code 2 before anything else; the kubeconfig error after
# parsing proves parsing passed).
citystack_bin=${CITYSTACK_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/citystack}
if [ -x "$citystack_bin" ]; then
  all_args=$(args_of --set azure.identity=managed --set azure.trustedNamespaces=citystack.io/azure=trusted \
    --set azure.subscriptionId=$guid --set azure.cloud=custom --set azure.armEndpoint=https://arm.example \
    --set azure.authorityHost=https://login.example --set azure.audience=https://arm.example/ \
    --set azure.caBundle.configMap=azure-ca --set azure.operationDeadlineSeconds=1800 --set azure.resyncSeconds=7200 \
    --set azure.budgetPercent=50)
  mapfile -t all_args < <(python3 -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "$all_args")
  check "citystack accepts all of them: ${all_args[*]}" bash -c '
    out=$("$@" --kubeconfig /nonexistent/kubeconfig 2>&1); rc=$?
    [ $rc = 1 ] && grep -q "kubeconfig: /nonexistent/kubeconfig" <<<"$out" || { echo "exit $rc: $out"; exit 1; }' \
    _ "$citystack_bin" "${all_args[@]}"
  # Every value the schema allows for an enum flag is one the operator knows.
  for key in identity cloud; do
    flag=$([ $key = identity ] && echo --azure-identity || echo --azure-cloud)
    for value in $(python3 -c 'import json, sys; print(" ".join(v for v in json.load(open(sys.argv[1]))["properties"]["azure"]["properties"][sys.argv[2]]["enum"] if v))' "$chart/values.schema.json" $key); do
      check "citystack accepts azure.$key=$value ($flag $value)" bash -c '
        out=$("$@" 2>&1); rc=$?
        [ $rc = 1 ] && grep -q "kubeconfig: /nonexistent/kubeconfig" <<<"$out" || { echo "exit $rc: $out"; exit 1; }' \
        _ "$citystack_bin" run "$flag" "$value" --kubeconfig /nonexistent/kubeconfig
    done
  done
  refuses "(and the check can fail: citystack refuses an unknown flag)" "unexpected argument" \
    "$citystack_bin" "${all_args[@]}" --azure-no-such-flag x --kubeconfig /nonexistent/kubeconfig
else
  bad "no citystack binary at $citystack_bin to check the flags against (cargo build, or set CITYSTACK_BIN)"
fi

step "Azure identity: Workload Identity convention, client-secret env"
wi=(--set azure.identity=workload --set azure.workloadIdentity.clientId=cid)
check "workload identity: ServiceAccount annotations client-id and tenant-id" \
  equals '{"azure.workload.identity/client-id":"cid","azure.workload.identity/tenant-id":"tid"}' \
  jsonpath_of serviceaccount.yaml '{.metadata.annotations}' "${wi[@]}" --set azure.workloadIdentity.tenantId=tid
check "workload identity without tenantId: the client-id annotation only" \
  equals '{"azure.workload.identity/client-id":"cid"}' jsonpath_of serviceaccount.yaml '{.metadata.annotations}' "${wi[@]}"
check "workload identity: pod label azure.workload.identity/use=true" \
  equals true jsonpath_of deployment.yaml '{.spec.template.metadata.labels.azure\.workload\.identity/use}' "${wi[@]}"
check "identity managed: no workload identity label or annotation" bash -c "
  ! '$helm' template $release $chart --set azure.identity=managed | grep -q 'azure.workload.identity'"
check "client secret: AZURE_* env from the Secret" bash -c "
  out=\$('$helm' template $release $chart --set azure.identity=client-secret --set azure.clientSecret.existingSecret=sp) &&
  [ \$(grep -c 'name: sp' <<<\"\$out\") = 3 ] && grep -q AZURE_CLIENT_SECRET <<<\"\$out\""
check "no Azure identity settings by default" lacks "$work/cluster.yaml" "AZURE_"
check "no workload identity by default" lacks "$work/cluster.yaml" "azure.workload.identity"
refuses "workload identity without clientId is refused" "clientId is required" \
  "$helm" template "$release" "$chart" --set azure.identity=workload
refuses "workloadIdentity.clientId without identity workload is refused" "only with azure.identity=workload" \
  "$helm" template "$release" "$chart" --set azure.workloadIdentity.clientId=cid
refuses "client-secret without existingSecret is refused" "existingSecret is required" \
  "$helm" template "$release" "$chart" --set azure.identity=client-secret
refuses "existingSecret without identity client-secret is refused" "only with azure.identity=client-secret" \
  "$helm" template "$release" "$chart" --set azure.identity=workload \
  --set azure.workloadIdentity.clientId=cid --set azure.clientSecret.existingSecret=sp
refuses "trustedNamespaces without an identity is refused" "no effect without an operator identity" \
  "$helm" template "$release" "$chart" --set azure.trustedNamespaces=citystack.io/azure=trusted
refuses "cloud custom without its endpoints is refused" "needs azure.armEndpoint and azure.authorityHost" \
  "$helm" template "$release" "$chart" --set azure.cloud=custom --set azure.armEndpoint=https://arm.example
refuses "an unknown identity is refused by the schema" "/azure/identity" \
  "$helm" template "$release" "$chart" --set azure.identity=probe
refuses "an unknown cloud is refused by the schema" "/azure/cloud" \
  "$helm" template "$release" "$chart" --set azure.cloud=azure-mars
refuses "a subscriptionId that is no GUID is refused by the schema" "subscriptionId" \
  "$helm" template "$release" "$chart" --set azure.subscriptionId=not-a-guid
refuses "an http:// ARM endpoint is refused by the schema" "armEndpoint" \
  "$helm" template "$release" "$chart" --set azure.armEndpoint=http://arm.example
refuses "operationDeadlineSeconds below 60 is refused by the schema" "operationDeadlineSeconds" \
  "$helm" template "$release" "$chart" --set azure.operationDeadlineSeconds=30
refuses "the former azure.workloadIdentity.enabled is refused by the schema" "enabled" \
  "$helm" template "$release" "$chart" --set azure.workloadIdentity.enabled=true

step "RBAC: the rendered rules are exactly the tables of README.md and the chart README"
to_json() { "$kubectl" create --dry-run=client -o json -f "$1" >"$1.json"; }
render --set azure.identity=managed --set azure.trustedNamespaces=citystack.io/azure=trusted >"$work/trusted.yaml"
to_json "$work/cluster.yaml" && to_json "$work/namespaced.yaml" && to_json "$work/trusted.yaml"
check "README.md (Security) and $chart/README.md (Permissions) list exactly the granted rules" \
  python3 hack/chart-rbac.py --fullname citystack --release-namespace "$ns" --service-account "$sa" \
  --watched "${watched[0]},${watched[1]}" --render "all=$work/cluster.yaml.json" \
  --render "namespaced=$work/namespaced.yaml.json" --render "trusted=$work/trusted.yaml.json" \
  README.md "$chart/README.md"
# The comparison can fail: a rule the table does not list is reported.
sed 's/"kube-system"/"kube-system", "default"/' "$work/cluster.yaml.json" >"$work/widened.json"
refuses "(and a grant the tables omit fails the comparison)" "does not list" \
  python3 hack/chart-rbac.py --fullname citystack --release-namespace "$ns" --service-account "$sa" \
  --watched "${watched[0]},${watched[1]}" --render "all=$work/widened.json" \
  --render "namespaced=$work/namespaced.yaml.json" --render "trusted=$work/trusted.yaml.json" README.md

refuses "watchNamespaces as a string is refused by the schema" "watchNamespaces" \
  "$helm" template "$release" "$chart" --set watchNamespaces=team-a
check "no CRD among the templates by default" lacks "$work/cluster.yaml" "kind: CustomResourceDefinition"
render --set crds.templated=true --show-only templates/crds.yaml >"$work/templated-crds.yaml"
check "crds.templated: the CRD carries helm.sh/resource-policy: keep" has "$work/templated-crds.yaml" "helm.sh/resource-policy: keep"
# The templated CRD must be the crds/ one: compare the specs as kubectl reads them.
# Each CRD's spec, by name, in one canonical JSON document.
specs() {
  "$kubectl" create --dry-run=client -o json "$@" | python3 -c '
import json, sys
text, decoder, items, at = sys.stdin.read(), json.JSONDecoder(), [], 0
while text[at:].strip():
    doc, end = decoder.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
    items.extend(doc.get("items", [doc]))
    at = end
print(json.dumps({i["metadata"]["name"]: i["spec"] for i in items}, sort_keys=True))'
}
templated_spec=$(specs -f "$work/templated-crds.yaml")
crds_spec=$(specs -f crds/)
check "crds.templated: same spec as crds/" test "$templated_spec" = "$crds_spec"

step "server-side dry run against the cluster"
ensure_ns "$ns" "${restricted[@]}"
for n in "${watched[@]}" "$unwatched"; do ensure_ns "$n"; done
ensure_ns "$ns_release_ns" "${restricted[@]}"
dry_run() { # FILE
  local output
  output=$("$kubectl" apply --dry-run=server -f "$1" 2>&1) || { echo "$output"; return 1; }
  if grep -q "violate PodSecurity" <<<"$output"; then echo "$output"; return 1; fi
}
check "cluster-wide render applies (dry run), no PodSecurity warning" dry_run "$work/cluster.yaml"
check "namespaced render applies (dry run), no PodSecurity warning" dry_run "$work/namespaced.yaml"
render --set crds.templated=true >"$work/templated.yaml"
check "crds.templated render applies (dry run)" dry_run "$work/templated.yaml"

step "install $release into $ns (PodSecurity restricted enforced)"
if "$helm" status "$release" -n "$ns" >/dev/null 2>&1; then
  echo "  release $release exists: upgrading it instead (its ServiceAccount, and tokens of it, stay valid)"
  check "helm upgrade $release" "$helm" upgrade "$release" "$chart" -n "$ns" "${image[@]}" "${wide[@]}" --wait --timeout 120s
else
  check "helm install $release" "$helm" install "$release" "$chart" -n "$ns" --create-namespace "${image[@]}" "${wide[@]}" --wait --timeout 120s
fi
check "Deployment Available" "$kubectl" -n "$ns" wait deployment/citystack --for=condition=Available --timeout=60s
check "Deployment has 2 ready replicas" bash -c "
  [ \"\$('$kubectl' -n $ns get deployment citystack -o jsonpath='{.spec.replicas}/{.status.readyReplicas}')\" = 2/2 ]"
check "2 operator pods run" bash -c "
  [ \$('$kubectl' -n $ns get pods -l app.kubernetes.io/instance=$release,app.kubernetes.io/name=citystack --field-selector=status.phase=Running -o name | wc -l) = 2 ]"
check "PodDisruptionBudget citystack has minAvailable 1" bash -c "
  [ \"\$('$kubectl' -n $ns get pdb citystack -o jsonpath='{.spec.minAvailable}')\" = 1 ]"
check "Service citystack-metrics has port metrics 8080" bash -c "
  [ \"\$('$kubectl' -n $ns get service citystack-metrics -o jsonpath='{.spec.ports[0].name}:{.spec.ports[0].port}')\" = metrics:8080 ]"
check "namespace $ns enforces PodSecurity restricted" bash -c "
  [ \"\$('$kubectl' get namespace $ns -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}')\" = restricted ]"
# The pods were admitted under enforce=restricted. Re-evaluate the running ones too: PodSecurity
# evaluates a namespace's pods when its enforce policy changes, so a server-side dry run of
# enforce-version=v1.<server minor> (the label is absent: "latest") reports any violation.
minor=$("$kubectl" version -o json | awk -F'"' '/"serverVersion"/{s=1} s && $2 == "minor" {print $4; exit}' | tr -dc 0-9)
check "the running pods pass PodSecurity restricted:v1.$minor (re-evaluated)" bash -c "
  out=\$('$kubectl' label --dry-run=server --overwrite namespace $ns pod-security.kubernetes.io/enforce-version=v1.$minor 2>&1) || { echo \"\$out\"; exit 1; }
  ! grep -q violate <<<\"\$out\" || { echo \"\$out\"; exit 1; }"
# ... and show that enforcement is really on: a privileged pod is refused.
refuses "a privileged pod is refused in $ns" "violates PodSecurity" "$kubectl" apply --dry-run=server -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: chart-test-privileged, namespace: $ns}
spec:
  containers: [{name: c, image: citystack:dev, securityContext: {privileged: true}}]
EOF

step "RBAC of system:serviceaccount:$ns:$sa (cluster-wide release)"
all_verbs=(get list watch create update patch delete deletecollection)
# verbs AS NAMESPACE-ARGS RESOURCE [SUBRESOURCE]: the verbs `kubectl auth can-i` grants, space-separated.
verbs() {
  local as=$1 scope=$2 resource=$3 sub=${4:-} v granted=()
  for v in "${all_verbs[@]}"; do
    # shellcheck disable=SC2086
    if [ "$("$kubectl" auth can-i "$v" "$resource" ${sub:+--subresource=$sub} $scope --as="$as" 2>/dev/null)" = yes ]; then
      granted+=("$v")
    fi
  done
  echo "${granted[*]}"
}
# expect_verbs AS SCOPE RESOURCE SUBRESOURCE EXPECTED...
expect_verbs() {
  local as=$1 scope=$2 resource=$3 sub=$4 got; shift 4
  got=$(verbs "$as" "$scope" "$resource" "$sub")
  local what="$resource${sub:+/$sub} ${scope:-(cluster)}"
  if [ "$got" = "$*" ]; then ok "$what: ${got:-none}"; else bad "$what: granted [${got}], expected [$*]"; fi
}
# watched_rules AS SCOPE: the controller's rules in one scope.
watched_rules() {
  local as=$1 scope=$2
  expect_verbs "$as" "$scope" solutionstacks.citystack.io "" get list watch patch
  expect_verbs "$as" "$scope" solutionstacks.citystack.io status get update patch
  expect_verbs "$as" "$scope" solutionstacks.citystack.io finalizers update
  expect_verbs "$as" "$scope" deployments.apps "" get list watch create patch delete
  expect_verbs "$as" "$scope" services "" get list watch create patch delete
  expect_verbs "$as" "$scope" secrets "" get list watch create patch
  expect_verbs "$as" "$scope" events.events.k8s.io "" create patch
  expect_verbs "$as" "$scope" azureresources.citystack.io "" get list watch create patch delete
  expect_verbs "$as" "$scope" azureresources.citystack.io status patch
  expect_verbs "$as" "$scope" azureresources.citystack.io finalizers update
}
# no_rules AS SCOPE: nothing of the controller's resources in that scope.
no_rules() {
  local as=$1 scope=$2
  expect_verbs "$as" "$scope" solutionstacks.citystack.io ""
  expect_verbs "$as" "$scope" solutionstacks.citystack.io status
  expect_verbs "$as" "$scope" deployments.apps ""
  expect_verbs "$as" "$scope" services ""
  expect_verbs "$as" "$scope" secrets ""
  expect_verbs "$as" "$scope" events.events.k8s.io ""
  expect_verbs "$as" "$scope" azureresources.citystack.io ""
}
# common_rules AS RELEASE_NS LIST: leases only in the release namespace, the self check, the
# GET of Namespace kube-system, nothing else; LIST=list when Namespaces may also be listed
# (azure.trustedNamespaces set), else empty.
common_rules() {
  local as=$1 home=$2 list=$3
  expect_verbs "$as" "-n $home" leases.coordination.k8s.io "" get list watch create update patch delete
  expect_verbs "$as" "-n $unwatched" leases.coordination.k8s.io ""
  expect_verbs "$as" "-A" leases.coordination.k8s.io ""
  expect_verbs "$as" "" selfsubjectaccessreviews.authorization.k8s.io "" create
  expect_verbs "$as" "" solutionblueprints.citystack.io "" get list watch
  expect_verbs "$as" "" solutionblueprints.citystack.io status patch
  expect_verbs "$as" "" customresourcedefinitions.apiextensions.k8s.io ""
  expect_verbs "$as" "-n $unwatched" pods ""
  expect_verbs "$as" "-n $unwatched" configmaps ""
  expect_verbs "$as" "-n $unwatched" events ""
  # shellcheck disable=SC2086 # $list is one verb or none
  expect_verbs "$as" "" namespaces/kube-system "" get $list
  # shellcheck disable=SC2086
  expect_verbs "$as" "" namespaces/default "" $list
  # shellcheck disable=SC2086
  expect_verbs "$as" "" namespaces "" $list
  expect_verbs "$as" "-A" roles.rbac.authorization.k8s.io ""
}
as_cluster=system:serviceaccount:$ns:$sa
watched_rules "$as_cluster" "-n ${watched[0]}"
watched_rules "$as_cluster" "-A"
common_rules "$as_cluster" "$ns" list
check "$release (azure.identity=managed, trustedNamespaces): its args carry both flags" bash -c "
  '$kubectl' -n $ns get deployment $release -o jsonpath='{.spec.template.spec.containers[0].args}' |
    grep -qF '\"--azure-identity\",\"managed\",\"--trusted-namespaces\",\"citystack.io/azure=trusted\"'"

step "RBAC of a namespaced release ($ns_release in $ns_release_ns watching ${watched[*]})"
check "helm upgrade --install $ns_release (watchNamespaces=${watched[0]},${watched[1]})" \
  "$helm" upgrade --install "$ns_release" "$chart" -n "$ns_release_ns" "${image[@]}" \
  --set "watchNamespaces={${watched[0]},${watched[1]}}" --set replicaCount=1 \
  --set azure.identity=workload --set azure.workloadIdentity.clientId=cid --wait --timeout 120s
check "$ns_release: ServiceAccount annotation azure.workload.identity/client-id: cid" bash -c "
  [ \"\$('$kubectl' -n $ns_release_ns get serviceaccount $ns_release -o jsonpath='{.metadata.annotations.azure\\.workload\\.identity/client-id}')\" = cid ]"
check "$ns_release: its pod carries azure.workload.identity/use=true" bash -c "
  [ \$('$kubectl' -n $ns_release_ns get pods -l app.kubernetes.io/instance=$ns_release,azure.workload.identity/use=true -o name | wc -l) -ge 1 ]"
check "$ns_release: --namespaces ${watched[0]},${watched[1]}" bash -c "
  '$kubectl' -n $ns_release_ns get deployment $ns_release -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -qF '\"--namespaces\",\"${watched[0]},${watched[1]}\"'"
as_ns=system:serviceaccount:$ns_release_ns:$ns_release
for n in "${watched[@]}"; do watched_rules "$as_ns" "-n $n"; done
no_rules "$as_ns" "-n $unwatched"
no_rules "$as_ns" "-A"
common_rules "$as_ns" "$ns_release_ns" ""
check "helm uninstall $ns_release" "$helm" uninstall "$ns_release" -n "$ns_release_ns" --wait --timeout 60s

step "crds.templated=true on the live release refuses the CRD it does not own"
refuses "helm upgrade --set crds.templated=true (dry run) fails with the adoption hint" "--skip-crds" \
  "$helm" upgrade "$release" "$chart" -n "$ns" --reuse-values --set crds.templated=true --dry-run=server

add_newfield() { # CHART_DIR: a harmless optional string under spec in each CRD of its crds/
  local f
  for f in "$1"/crds/*.yaml; do
    # spec's properties are 14 spaces deep.
    awk '{print} $0 == "          spec:" && !done {s = 1}
         s && $0 == "            properties:" {
           print "              newfield:"
           print "                description: Added by hack/chart-test.sh to test the CRD upgrade path."
           print "                type: string"
           s = 0; done = 1 }' "$f" >"$f.new" && mv "$f.new" "$f"
  done
}

step "crds.templated=true path, on a copy of the CRD renamed to group chart-test.citystack.io"
# The shared CRD is left alone: a renamed copy exercises install, upgrade and uninstall.
tcrd=solutionstacks.chart-test.citystack.io
tcrds=("$tcrd" azureresources.chart-test.citystack.io solutionblueprints.chart-test.citystack.io)
trelease=citystack-tmpl
cp -r "$chart" "$work/templated"
sed -i 's/citystack\.io/chart-test.citystack.io/g' "$work"/templated/crds/*.yaml
"$kubectl" delete crd "${tcrds[@]}" --ignore-not-found --wait >/dev/null
test_crd_created=1
tinstall() { "$helm" install "$trelease" "$work/templated" -n "$ns_release_ns" "${image[@]}" --set replicaCount=1 \
  --set "watchNamespaces={${watched[0]}}" --set crds.templated=true --wait --timeout 120s "$@"; }
refuses "install without --skip-crds is refused (crds/ created the CRD first)" "--skip-crds" tinstall
check "(those CRDs are unowned; delete them)" "$kubectl" delete crd "${tcrds[@]}" --wait
check "helm install --skip-crds --set crds.templated=true" tinstall --skip-crds
check "the CRD belongs to the release and has resource-policy keep" bash -c "
  [ \"\$('$kubectl' get crd $tcrd -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-name} {.metadata.annotations.helm\.sh/resource-policy}')\" = '$trelease keep' ]"
refuses "a second release with crds.templated=true is refused" "not owned by release" \
  "$helm" install citystack-tmpl2 "$work/templated" -n "$ns_release_ns" --skip-crds --set crds.templated=true \
  --set "watchNamespaces={${watched[0]}}" --dry-run=server
add_newfield "$work/templated"
check "helm upgrade with a new CRD field (no kubectl step)" "$helm" upgrade "$trelease" "$work/templated" -n "$ns_release_ns" --reuse-values --wait --timeout 120s
check "the live CRD has newfield" bash -c "'$kubectl' get crd $tcrd -o json | grep -q newfield"
check "helm uninstall $trelease" "$helm" uninstall "$trelease" -n "$ns_release_ns" --wait --timeout 60s
check "the CRDs survive the uninstall (keep)" "$kubectl" get crd "${tcrds[@]}"
check "(delete the test CRDs)" "$kubectl" delete crd "${tcrds[@]}" --wait
test_crd_created=0

step "CRD upgrade path: server-side apply of crds/, then helm upgrade"
crd=solutionstacks.citystack.io
cp -r "$chart" "$work/citystack"
add_newfield "$work/citystack"
check "the copy's CRD has newfield" grep -q "newfield:" "$work"/citystack/crds/*.yaml
check "the live CRD has no newfield yet" bash -c "! '$kubectl' get crd $crd -o json | grep -q newfield"
crd_modified=1
check "kubectl apply --server-side --force-conflicts -f <chart copy>/crds/" \
  "$kubectl" apply --server-side --force-conflicts -f "$work/citystack/crds/"
check "CRD Established" "$kubectl" wait --for=condition=Established --timeout=60s "crd/$crd"
check "helm upgrade $release <chart copy>" "$helm" upgrade "$release" "$work/citystack" -n "$ns" --reuse-values --wait --timeout 120s
check "the live CRD has newfield" bash -c "'$kubectl' get crd $crd -o json | grep -q newfield"
check "a SolutionStack with spec.newfield keeps it (not pruned)" bash -c "
  '$kubectl' create --dry-run=server -o jsonpath='{.spec.newfield}' -f - <<'EOF' | grep -qx kept
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: chart-test-newfield, namespace: ${watched[0]}}
spec:
  solution: chart-test
  newfield: kept
  components: [{name: web, image: citystack:dev}]
EOF"
check "restore: kubectl apply --server-side --force-conflicts -f crds/" "$kubectl" apply --server-side --force-conflicts -f crds/
crd_modified=0
check "restore: helm upgrade $release $chart" "$helm" upgrade "$release" "$chart" -n "$ns" --reuse-values --wait --timeout 120s
check "the live CRD has no newfield again" bash -c "! '$kubectl' get crd $crd -o json | grep -q newfield"

step "kubeconfig of the ServiceAccount $ns/$sa"
server=$("$kubectl" config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.server}')
ca_data=$("$kubectl" config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
token=$("$kubectl" create token "$sa" -n "$ns" --duration 2h)
mkdir -p "$(dirname "$out_kubeconfig")"
(
  umask 077
  cat >"$out_kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: citystack
  cluster:
    server: $server
    certificate-authority-data: $ca_data
users:
- name: $ns-$sa
  user:
    token: $token
contexts:
- name: $sa@citystack
  context: {cluster: citystack, user: $ns-$sa, namespace: $ns}
current-context: $sa@citystack
EOF
)
mv "$out_kubeconfig.tmp" "$out_kubeconfig"
check "it authenticates as system:serviceaccount:$ns:$sa" bash -c "
  '$kubectl' --kubeconfig '$out_kubeconfig' auth whoami -o jsonpath='{.status.userInfo.username}' | grep -qx 'system:serviceaccount:$ns:$sa'"
check "it can list SolutionStacks in all namespaces" "$kubectl" --kubeconfig "$out_kubeconfig" get solutionstacks -A
refuses "it cannot list pods" "Forbidden" "$kubectl" --kubeconfig "$out_kubeconfig" get pods -n "$ns"

if [ "${CHART_TEST_CLEANUP:-0}" = 1 ]; then
  step "cleanup (CHART_TEST_CLEANUP=1)"
  check "helm uninstall $release" "$helm" uninstall "$release" -n "$ns" --wait --timeout 60s
  check "delete the test namespaces" "$kubectl" delete namespace "$ns" "$ns_release_ns" "${watched[@]}" "$unwatched" \
    --ignore-not-found --wait --timeout=120s
  rm -f "$out_kubeconfig"
else
  printf '\nrelease %s stays installed in %s (CHART_TEST_CLEANUP=1 removes it)\n' "$release" "$ns"
  printf 'kubeconfig of the ServiceAccount %s/%s (valid 2 h): %s\n' "$ns" "$sa" "$out_kubeconfig"
fi
printf 'chart-test: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
