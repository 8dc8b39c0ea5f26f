# shellcheck shell=bash
# Sourced (not run) by test/k8s/run.sh and test/k3s/bootstrap.sh: the artifacts they install (the
# release shim and the wasm image) and the check of the demo Deployment. The names below must
# match test/k8s/deployment.yaml; tests/e2e/tests/cluster_files/ checks that they do.

WASMPOD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WASMPOD_K8S_DIR=$WASMPOD_ROOT/test/k8s
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$WASMPOD_ROOT/target}
CARGO=${CARGO:-cargo}

WASMPOD_SHIM_NAME=containerd-shim-wasmtime-v1
# tests/e2e/src/images.rs WASM_IMAGE: never pulled, loaded into the node from a local tarball.
WASMPOD_WASM_IMAGE=docker.io/wasmpod/wasm:latest
WASMPOD_DEPLOYMENT=wasmpod-demo
WASMPOD_SELECTOR=app=wasmpod-demo
WASMPOD_HELLO_CONTAINER=hello
WASMPOD_WASM_CONTAINER=wasm

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

# wasmpod_artifacts DIR: sets SHIM_BIN (the release shim) and WASM_IMAGE_TAR (the wasm image as
# an OCI image-layout tarball written into DIR). Either may be given in the environment to use a
# prebuilt one; whatever is missing is built with cargo.
wasmpod_artifacts() {
    local dir=$1 packages=()
    [[ -n ${SHIM_BIN:-} ]] || packages+=(-p wasmpod-shim)
    [[ -n ${WASM_IMAGE_TAR:-} ]] || packages+=(-p wasmpod-oci-image)
    if ((${#packages[@]} > 0)); then
        command -v "$CARGO" >/dev/null 2>&1 ||
            die "cargo not found: install Rust (https://rustup.rs), or set SHIM_BIN and WASM_IMAGE_TAR to prebuilt files"
        if [[ -z ${SHIM_BIN:-} ]] && ! pkg-config --exists libseccomp 2>/dev/null; then
            die "libseccomp not found (the shim links it): apt-get install libseccomp-dev pkg-config"
        fi
        log "cargo build --release ${packages[*]} (target dir $CARGO_TARGET_DIR)"
        (cd "$WASMPOD_ROOT" && "$CARGO" build --release --bins "${packages[@]}")
    fi
    if [[ -z ${SHIM_BIN:-} ]]; then
        SHIM_BIN=$CARGO_TARGET_DIR/release/$WASMPOD_SHIM_NAME
    fi
    [[ -x $SHIM_BIN ]] || die "shim binary $SHIM_BIN not found or not executable"
    if [[ -z ${WASM_IMAGE_TAR:-} ]]; then
        WASM_IMAGE_TAR=$dir/wasm-image.tar
        wasmpod_write_wasm_image "$CARGO_TARGET_DIR/release/wasmpod-image" "$WASM_IMAGE_TAR"
    fi
    [[ -f $WASM_IMAGE_TAR ]] || die "wasm image tarball $WASM_IMAGE_TAR not found"
}

# wasmpod_write_wasm_image WASMPOD_IMAGE_BIN OUT_TAR: the wasm image of the e2e suite
# (tests/e2e/src/images.rs: entrypoint /hello.wasm, GREETING=hi, the fixtures, /data/hello.txt),
# written with our own image CLI (tools/oci-image).
wasmpod_write_wasm_image() {
    local bin=$1 out=$2 fixtures=$WASMPOD_ROOT/tests/fixtures hello_txt
    hello_txt=$(dirname "$out")/hello.txt
    printf 'hello from the rootfs\n' >"$hello_txt"
    log "writing $WASMPOD_WASM_IMAGE to $out"
    "$bin" --name "$WASMPOD_WASM_IMAGE" --out "$out" \
        --file "/hello.wasm=$fixtures/wasm/hello.wasm" \
        --file "/testprog.wasm=$fixtures/wasm/testprog.wasm" \
        --file "/greet.wat=$fixtures/wat/greet.wat" \
        --file "/data/hello.txt=$hello_txt" \
        --entrypoint /hello.wasm \
        --env GREETING=hi
}

# wasmpod_diagnose KUBECTL...: what helps after a failure. A script may define
# wasmpod_node_logs to add the node's own logs (containerd, k3s).
wasmpod_diagnose() {
    log "diagnostics"
    "$@" get pods -l "$WASMPOD_SELECTOR" -o wide || true
    "$@" describe pods -l "$WASMPOD_SELECTOR" || true
    "$@" get events --sort-by=.lastTimestamp || true
    if declare -F wasmpod_node_logs >/dev/null; then
        wasmpod_node_logs || true
    fi
}

# wasmpod_deploy_and_check KUBECTL...: applies the RuntimeClass and the Deployment, waits until
# the Deployment is Available, prints the wasm containers' logs, runs a wasm exec, and checks
# what they printed. KUBECTL is the kubectl command line, e.g. `kubectl --kubeconfig F`.
wasmpod_deploy_and_check() {
    local hello sleeper exec_out
    log "applying runtimeclass.yaml and deployment.yaml"
    "$@" apply -f "$WASMPOD_K8S_DIR/runtimeclass.yaml" -f "$WASMPOD_K8S_DIR/deployment.yaml"
    log "waiting for deployment/$WASMPOD_DEPLOYMENT to be Available"
    if ! "$@" wait --for=condition=Available "deployment/$WASMPOD_DEPLOYMENT" \
        --timeout="${WAIT_TIMEOUT:-300s}"; then
        wasmpod_diagnose "$@"
        die "deployment/$WASMPOD_DEPLOYMENT did not become Available"
    fi
    "$@" get pods -l "$WASMPOD_SELECTOR" -o wide

    log "logs of the wasm init container '$WASMPOD_HELLO_CONTAINER' (/hello.wasm)"
    hello=$("$@" logs "deployment/$WASMPOD_DEPLOYMENT" -c "$WASMPOD_HELLO_CONTAINER")
    printf '%s\n' "$hello"
    log "logs of the wasm container '$WASMPOD_WASM_CONTAINER' (/testprog.wasm sleep: silent while it runs)"
    sleeper=$("$@" logs "deployment/$WASMPOD_DEPLOYMENT" -c "$WASMPOD_WASM_CONTAINER")
    printf '%s\n' "$sleeper"
    log "exec in '$WASMPOD_WASM_CONTAINER': /testprog.wasm cat /data/hello.txt"
    exec_out=$("$@" exec "deployment/$WASMPOD_DEPLOYMENT" -c "$WASMPOD_WASM_CONTAINER" -- \
        /testprog.wasm cat /data/hello.txt)
    printf '%s\n' "$exec_out"

    [[ $hello == *"hello from wasm"* && $hello == *"arg[1]=from"* ]] ||
        die "unexpected output from the '$WASMPOD_HELLO_CONTAINER' container"
    [[ $exec_out == "hello from the rootfs" ]] ||
        die "unexpected output from the wasm exec"
    log "OK: wasm and native containers run side by side in one pod (RuntimeClass wasmtime)"
}
