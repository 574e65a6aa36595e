#!/usr/bin/env bash
# Builds the pinned control-plane binaries once per machine into a cache outside the repo:
#   ${CITYSTACK_CACHE:-$HOME/.cache/citystack}/cluster/<kube>-<etcd>-<kwok>/bin
# Prints that bin folder. A second run finds the stamp and returns at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${CITYSTACK_CACHE:-$HOME/.cache/citystack}
bin="$cache/cluster/${KUBE_VERSION}-etcd${ETCD_VERSION}-kwok${KWOK_VERSION}/bin"
if [ -f "$bin/.complete" ]; then echo "$bin"; exit 0; fi
mkdir -p "$bin"
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
# /version must report the real release, as the upstream build's ldflags do.
ver="-X k8s.io/component-base/version.gitVersion=${KUBE_VERSION}"
ver="$ver -X k8s.io/component-base/version.gitMajor=$(echo "${KUBE_VERSION#v}" | cut -d. -f1)"
ver="$ver -X k8s.io/component-base/version.gitMinor=$(echo "${KUBE_VERSION#v}" | cut -d. -f2)"
ver="$ver -X k8s.io/component-base/version.gitTreeState=clean"
ver="$ver -X k8s.io/client-go/pkg/version.gitVersion=${KUBE_VERSION}"
start=$(date +%s)
(
  cd "$here/kube"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    echo "building $cmd ${KUBE_VERSION}" >&2
    go build -trimpath -ldflags "-s -w $ver" -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
  echo "building etcd ${ETCD_VERSION}" >&2
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" ./etcd
)
(
  cd "$here/kwok"
  echo "building kwok ${KWOK_VERSION}" >&2
  go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" -o "$bin/kwok" sigs.k8s.io/kwok/cmd/kwok
)
echo "control plane built in $(( $(date +%s) - start ))s" >&2
touch "$bin/.complete"
echo "$bin"
