#!/usr/bin/env bash
# Builds the operator image from BINARY and checks it (hack/image/check.py): unpacked as a
# runtime would, its entrypoint answers --version as user 65532 with only the image's files,
# and the chart runs it as that user with a read-only root filesystem. No cluster needed.
#
#   hack/image/test.sh BINARY [OUT_DIR]     (OUT_DIR default .local/image)
#
# `make test` passes the debug binary it built anyway; `make image` the release one.
# Environment: PYTHON (default python3; needs PyYAML), HELM (default: hack/helm/build.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -ge 1 ] || { echo "usage: hack/image/test.sh BINARY [OUT_DIR]" >&2; exit 2; }
binary=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
out=${2:-$repo/.local/image}
cd "$repo"
python=${PYTHON:-python3}
helm=${HELM:-$(hack/helm/build.sh)}
version=$("$binary" --version | awk '{print $2}')

hack/image/build.sh "$binary" "$out" "$version"
deployment=$(mktemp)
trap 'rm -f "$deployment"' EXIT
"$helm" template citystack charts/citystack --show-only templates/deployment.yaml >"$deployment"
"$python" hack/image/check.py --layout "$out/oci" --archive "$out/citystack.tar" --version "$version" \
  --deployment "$deployment"
