#!/usr/bin/env bash
# Writes the image test/k8s/node-installer.yaml runs: busybox (for sh, cp, nsenter and sleep)
# plus wasmpod-node and the shims under /opt/wasmpod, as an OCI image-layout tarball built with
# wasmpod-image (tools/oci-image). Load it into the nodes, e.g.
# `kind load image-archive OUT.tar`, `k3s ctr images import OUT.tar`.
#
#   test/k8s/node-installer-image.sh [OUT.tar]     # default: node-installer.tar
#
# Needs cargo (with libseccomp-dev and protobuf-compiler for the shims) and a static busybox
# (apt-get install busybox-static). The shims and wasmpod-node run on the node itself, with
# its glibc: build on a host whose glibc is not newer than the nodes'.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/k8s/common.sh
source "$HERE/common.sh"

OUT=${1:-node-installer.tar}
IMAGE=docker.io/wasmpod/node-installer:latest
BUSYBOX=${BUSYBOX:-/bin/busybox}

[[ -x $BUSYBOX ]] && ! ldd "$BUSYBOX" >/dev/null 2>&1 ||
    die "$BUSYBOX is not a static busybox: apt-get install busybox-static, or set BUSYBOX"
command -v "$CARGO" >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"

log "cargo build --release (target dir $CARGO_TARGET_DIR)"
(cd "$WASMPOD_ROOT" && "$CARGO" build --release --bins -p wasmpod-shim -p wasmpod-node -p wasmpod-oci-image)
RELEASE=$CARGO_TARGET_DIR/release

log "writing $IMAGE to $OUT"
"$RELEASE/wasmpod-image" --name "$IMAGE" --out "$OUT" --busybox "$BUSYBOX" \
    --file /opt/wasmpod/wasmpod-node="$RELEASE/wasmpod-node" \
    --file /opt/wasmpod/containerd-shim-wasmtime-v1="$RELEASE/containerd-shim-wasmtime-v1" \
    --file /opt/wasmpod/containerd-shim-wasmer-v1="$RELEASE/containerd-shim-wasmer-v1"
