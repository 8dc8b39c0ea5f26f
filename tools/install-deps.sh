#!/usr/bin/env bash
# Installs what building and testing wasmpod needs on Debian 12, as root. Idempotent: does
# nothing when everything is present. No container registry or GitHub download is used.
# Usage: tools/install-deps.sh [--bench]   (--bench adds what only `make bench` needs: wrk)
set -euo pipefail

packages=(containerd runc containernetworking-plugins busybox-static libseccomp-dev pkg-config gcc
    protobuf-compiler)
case "${1:-}" in
    "") ;;
    --bench) packages+=(wrk) ;;
    *) echo "usage: $0 [--bench]" >&2; exit 2 ;;
esac

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in "${packages[@]}"; do
    have_pkg "$pkg" || missing+=("$pkg")
done
# Building against an installed libwasmedge (README, WasmEdge): wasmedge-sys runs bindgen.
if [ -n "${WASMEDGE_DIR:-}" ]; then
    have_pkg libclang-dev || missing+=(libclang-dev)
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]}; run as root or: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
