#!/usr/bin/env bash
# Builds the Helm release pinned in hack/helm/go.mod once per machine into a cache outside
# the repo:
#   ${CITYSTACK_CACHE:-$HOME/.cache/citystack}/helm/<version>/bin/helm
# Prints that path. A second run finds the stamp and returns at once.
# Only the Go module proxy is needed (no download of a prebuilt binary).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The version is read from go.mod, the single place that pins it.
version=$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" {print $3} $1 == "helm.sh/helm/v3" {print $2}' "$here/go.mod" | head -n1)
if [ -z "$version" ]; then echo "hack/helm/build.sh: no helm.sh/helm/v3 in $here/go.mod" >&2; exit 1; fi
cache=${CITYSTACK_CACHE:-$HOME/.cache/citystack}
bin="$cache/helm/$version/bin"
if [ -f "$bin/.complete" ] && [ -x "$bin/helm" ]; then echo "$bin/helm"; exit 0; fi
mkdir -p "$bin"
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
(
  cd "$here"
  # As upstream's Makefile: the version `helm version` reports, and the Kubernetes version
  # `helm template`/`helm lint` assume without a cluster (client-go v0.N.x -> 1.N).
  kube=$(go list -m -f '{{.Version}}' k8s.io/client-go)
  kube_minor=$(echo "${kube#v}" | cut -d. -f2)
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
  ldflags="$ldflags -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags="$ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
  done
  echo "building helm $version (client-go $kube)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$bin/helm.tmp" helm.sh/helm/v3/cmd/helm
  mv "$bin/helm.tmp" "$bin/helm"
)
echo "helm built in $(( $(date +%s) - start ))s" >&2
touch "$bin/.complete"
echo "$bin/helm"
