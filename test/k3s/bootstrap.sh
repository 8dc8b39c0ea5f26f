#!/usr/bin/env bash
# k3s: installs a pinned k3s on this machine, installs the wasmpod shim and registers it as
# containerd runtime handler "wasmtime" (test/k3s/config.toml.tmpl), imports the locally built
# wasm image, and runs the same RuntimeClass and Deployment as the kind test
# (test/k8s/runtimeclass.yaml and deployment.yaml: wasm and nginx containers in one pod), then
# checks it. k3s stays installed afterwards; UNINSTALL=1 removes it again.
#
# Run as root on a throwaway Linux machine or VM with systemd and network: the installer replaces
# any k3s already installed by version $K3S_VERSION below. Needs curl, and Rust (cargo) with
# libseccomp-dev unless prebuilt files are given.
#
#   make test/k3s                   # or test/k3s/bootstrap.sh
#   UNINSTALL=1 make test/k3s       # remove k3s (k3s-uninstall.sh), the shim and its cache
#   SHIM_BIN=... WASM_IMAGE_TAR=... # use prebuilt files instead of building them with cargo
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/k8s/common.sh
source "$HERE/../k8s/common.sh"

# Pinned: k3s v1.29 embeds containerd 1.7, whose config version 2 the template extends (k3s
# releases with containerd 2.x render config version 3 instead).
K3S_VERSION=v1.29.4+k3s1
K3S_CONTAINERD_DIR=/var/lib/rancher/k3s/agent/etc/containerd
SHIM_DST=/usr/local/bin/$WASMPOD_SHIM_NAME
KUBECTL=(k3s kubectl)

[[ $(id -u) -eq 0 ]] || die "run as root: this installs k3s and $SHIM_DST"

if [[ ${UNINSTALL:-0} == 1 ]]; then
    if command -v k3s >/dev/null 2>&1 && "${KUBECTL[@]}" get --raw=/readyz >/dev/null 2>&1; then
        # Let the shim stop its containers and exit: k3s-killall.sh only kills k3s's own shims.
        log "deleting deployment/$WASMPOD_DEPLOYMENT"
        "${KUBECTL[@]}" delete -f "$WASMPOD_K8S_DIR/deployment.yaml" --ignore-not-found --wait --timeout=120s || true
        "${KUBECTL[@]}" wait --for=delete pod -l "$WASMPOD_SELECTOR" --timeout=120s || true
    fi
    if [[ -x /usr/local/bin/k3s-uninstall.sh ]]; then
        log "uninstalling k3s"
        /usr/local/bin/k3s-uninstall.sh
    else
        log "k3s is not installed (no /usr/local/bin/k3s-uninstall.sh)"
    fi
    log "removing $SHIM_DST and the shim's module cache"
    rm -f "$SHIM_DST"
    rm -rf /var/lib/wasmpod/cache
    left=()
    for exe in /proc/[0-9]*/exe; do
        [[ $(readlink "$exe" 2>/dev/null) == "$SHIM_DST"* ]] && left+=("$(basename "$(dirname "$exe")")")
    done
    if ((${#left[@]} > 0)); then
        log "shim processes still running (pids ${left[*]}): stop them with kill <pid>"
    fi
    log "uninstalled"
    exit 0
fi

# k3s registers a wasmtime shim found in these folders itself, as runtime "wasmtime" with
# runtime_type io.containerd.wasmtime.v2: that table would clash with ours.
for dir in /opt/kwasm/bin /usr/bin /usr/sbin; do
    [[ ! -e $dir/$WASMPOD_SHIM_NAME ]] ||
        die "$dir/$WASMPOD_SHIM_NAME exists: k3s would register it as runtime \"wasmtime\" too and its config would not load; remove it first"
done
command -v curl >/dev/null 2>&1 || die "curl not found: apt-get install curl"
[[ -d /run/systemd/system ]] || die "systemd is not running: this script restarts k3s with systemctl"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# k3s's logs, for wasmpod_diagnose.
wasmpod_node_logs() {
    log "k3s log (wasm, shim and error lines)"
    journalctl -u k3s --no-pager -n 1000 | grep -i -e wasm -e shim -e 'level=error' | tail -n 80 || true
}

wasmpod_artifacts "$WORK"

log "installing k3s $K3S_VERSION"
curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION=$K3S_VERSION sh -

log "installing $SHIM_DST"
install -m 0755 "$SHIM_BIN" "$SHIM_DST"
log "writing $K3S_CONTAINERD_DIR/config.toml.tmpl"
install -d "$K3S_CONTAINERD_DIR"
install -m 0644 "$HERE/config.toml.tmpl" "$K3S_CONTAINERD_DIR/config.toml.tmpl"

log "restarting k3s"
systemctl restart k3s
for _ in $(seq 120); do
    "${KUBECTL[@]}" get --raw=/readyz >/dev/null 2>&1 && break
    sleep 1
done
"${KUBECTL[@]}" wait --for=condition=Ready node --all --timeout=180s
grep -q 'io.containerd.wasmtime.v1' "$K3S_CONTAINERD_DIR/config.toml" ||
    die "k3s did not render the wasmtime runtime into $K3S_CONTAINERD_DIR/config.toml"

log "importing $WASMPOD_WASM_IMAGE"
k3s ctr -n k8s.io images import "$WASM_IMAGE_TAR"
k3s ctr -n k8s.io images ls -q | grep -qx "$WASMPOD_WASM_IMAGE" ||
    die "$WASMPOD_WASM_IMAGE is not listed after the import"

wasmpod_deploy_and_check "${KUBECTL[@]}"
log "k3s stays installed; remove it with: UNINSTALL=1 make test/k3s"
