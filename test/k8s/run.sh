#!/usr/bin/env bash
# kind: builds a node image with the wasmpod shim (test/k8s/Dockerfile), creates a one-node
# cluster (test/k8s/kind-config.yaml), loads the locally built wasm image into it, runs
# test/k8s/deployment.yaml (wasm and nginx containers in one pod, RuntimeClass "wasmtime") and
# checks it. The cluster is deleted on exit unless KEEP_CLUSTER=1.
#
# Needs docker, kind v0.22.0 or newer, kubectl, Rust (cargo) with libseccomp-dev, and network
# (the kindest/node base image and nginx come from Docker Hub).
#
#   make test/k8s                   # or test/k8s/run.sh
#   KEEP_CLUSTER=1 make test/k8s    # keep the cluster afterwards
#   SHIM_BIN=... WASM_IMAGE_TAR=... # use prebuilt files instead of building them with cargo
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/k8s/common.sh
source "$HERE/common.sh"

KIND_CONFIG=$HERE/kind-config.yaml
CLUSTER=$(awk '$1 == "name:" { print $2; exit }' "$KIND_CONFIG")
NODE_IMAGE=$(awk '$1 == "image:" { print $2; exit }' "$KIND_CONFIG")
[[ -n $CLUSTER && -n $NODE_IMAGE ]] || die "$KIND_CONFIG must give the cluster a name and its node an image"

# Prerequisites: report every missing tool at once.
missing=0
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        printf '%s: %s not found: %s\n' "${0##*/}" "$1" "$2" >&2
        missing=1
    fi
}
need docker "install Docker Engine (https://docs.docker.com/engine/install/)"
need kind "install kind v0.22.0 or newer (https://kind.sigs.k8s.io/docs/user/quick-start/#installation, or: go install sigs.k8s.io/kind@v0.22.0)"
need kubectl "install kubectl v1.28 to v1.30 (https://kubernetes.io/docs/tasks/tools/)"
((missing == 0)) || exit 1
docker info >/dev/null 2>&1 ||
    die "docker cannot reach its daemon: start it, or run as a user allowed to use it"
kind_version=$(kind version | awk '{ print $2 }')
IFS=. read -r kind_major kind_minor _ <<<"${kind_version#v}"
if [[ $kind_major == 0 ]] && ((kind_minor < 22)); then
    die "kind $kind_version is too old for the node image (kindest/node v1.29.2 is from kind v0.22.0): install kind v0.22.0 or newer"
fi
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    die "a kind cluster named $CLUSTER exists already; remove it with: kind delete cluster --name $CLUSTER"
fi

WORK=$(mktemp -d)
created=0
cleanup() {
    local rc=$?
    if ((created)); then
        if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
            log "KEEP_CLUSTER=1: kept kind cluster $CLUSTER (kubeconfig: kind export kubeconfig --name $CLUSTER; remove: kind delete cluster --name $CLUSTER)"
        else
            log "deleting kind cluster $CLUSTER"
            kind delete cluster --name "$CLUSTER" || true
        fi
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The node's containerd logs, for wasmpod_diagnose.
wasmpod_node_logs() {
    local node
    for node in $(kind get nodes --name "$CLUSTER"); do
        log "containerd log of $node (wasm, shim and error lines)"
        docker exec "$node" journalctl -u containerd --no-pager -n 500 |
            grep -i -e wasm -e shim -e 'level=error' | tail -n 80 || true
    done
}

wasmpod_artifacts "$WORK"

log "building node image $NODE_IMAGE"
mkdir "$WORK/node"
cp "$SHIM_BIN" "$WORK/node/$WASMPOD_SHIM_NAME"
cp "$HERE/containerd-wasmtime.toml" "$WORK/node/containerd-wasmtime.toml"
docker build -t "$NODE_IMAGE" -f "$HERE/Dockerfile" "$WORK/node"

log "creating kind cluster $CLUSTER"
created=1
export KUBECONFIG=$WORK/kubeconfig
kind create cluster --config "$KIND_CONFIG" --kubeconfig "$KUBECONFIG" --wait 180s

log "loading $WASMPOD_WASM_IMAGE into the node"
kind load image-archive "$WASM_IMAGE_TAR" --name "$CLUSTER"
for node in $(kind get nodes --name "$CLUSTER"); do
    docker exec "$node" crictl inspecti "$WASMPOD_WASM_IMAGE" >/dev/null ||
        die "$WASMPOD_WASM_IMAGE is not in the CRI image store of $node"
done

wasmpod_deploy_and_check kubectl --kubeconfig "$KUBECONFIG"
