#!/usr/bin/env bash
# Builds the operator image from a citystack binary, without a Docker daemon:
#
#   hack/image/build.sh BINARY OUT_DIR [TAG]
#
# writes OUT_DIR/oci (an OCI image layout, ref TAG) and OUT_DIR/citystack.tar (a
# docker-archive, citystack:TAG). TAG defaults to the version `BINARY --version` prints.
#
# The binary is dynamically linked against glibc (only the gnu Rust target is installed
# here, so no static musl build), so the image carries the program interpreter and the exact
# shared libraries `ldd` resolves on this machine, at the same paths, plus the CA bundle
# (reqwest verifies ARM's and Entra ID's certificates against the system roots) and an
# /etc/passwd naming user 65532. No shell, no package manager. The layer and config come from
# hack/image/main.go (go-containerregistry); every file is owned by 0:0 and dated at the
# HEAD commit (or SOURCE_DATE_EPOCH), so the same binary gives the same image digest.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -ge 2 ] || { echo "usage: hack/image/build.sh BINARY OUT_DIR [TAG]" >&2; exit 2; }
binary=$1 out=$2
[ -x "$binary" ] || { echo "hack/image/build.sh: $binary is not an executable" >&2; exit 1; }
tag=${3:-$("$binary" --version | awk '{print $2}')}
[ -n "$tag" ] || { echo "hack/image/build.sh: no tag, and $binary --version printed none" >&2; exit 1; }
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] || { echo "hack/image/build.sh: no $ca_bundle (apt-get install ca-certificates)" >&2; exit 1; }
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}

tool="$repo/.local/bin/oci-image"
mkdir -p "$repo/.local/bin" "$out"
(cd "$repo/hack/image" && GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -o "$tool" .)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# Symbols are not needed to run and are most of a debug build's size.
strip --strip-all -o "$root/citystack" "$binary"
chmod 0755 "$root/citystack"

# copy_in PATH: the file PATH resolves to, at PATH inside the root (symlinks followed, so a
# merged-/usr host's /lib64 -> /lib/... link becomes a plain file where the binary looks).
copy_in() {
  mkdir -p "$root$(dirname "$1")"
  cp -L "$1" "$root$1"
  chmod 0755 "$root$1"
}
interpreter=$(readelf -lW "$root/citystack" | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')
if [ -n "$interpreter" ]; then
  copy_in "$interpreter"
  # `ldd` prints "name => /path (address)" for each library it resolved, "not found" else.
  if ldd "$root/citystack" | grep -q 'not found'; then
    ldd "$root/citystack" >&2
    echo "hack/image/build.sh: a shared library of $binary is missing on this machine" >&2
    exit 1
  fi
  while read -r lib; do copy_in "$lib"; done < <(ldd "$root/citystack" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
fi

mkdir -p "$root/etc/ssl/certs"
install -m 0644 "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
# A name for uid 65532, as distroless has, so tools that look the user up find one.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
find "$root" -type d -exec chmod 0755 {} +

"$tool" -root "$root" -layout "$out/oci" -archive "$out/citystack.tar" -repository citystack -tag "$tag" -epoch "$epoch"
