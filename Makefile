# wasmpod: `make demo` runs the main job, `make test` the whole suite (both as root on Debian 12).

# One shared target dir outside the clone when the machine has one (builds are slow on 2 cores).
CARGO_TARGET_DIR ?= $(if $(wildcard /var/cache/wasmpod-target),/var/cache/wasmpod-target,$(CURDIR)/target)
export CARGO_TARGET_DIR
CARGO ?= cargo

.PHONY: all deps build lint unit e2e test demo bench fixtures clean
.PHONY: check-wasmedge wasmedge-lib build-wasmedge unit-wasmedge

all: build

deps:
	tools/install-deps.sh

# The wasmer engine and its shim are a workspace of their own, with their own lock file
# (executors/wasmer/Cargo.toml says why); built into the same target directory.
WASMER = --manifest-path executors/wasmer/Cargo.toml

build: deps
	$(CARGO) build --workspace --bins
	$(CARGO) build $(WASMER) --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt $(WASMER) -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy $(WASMER) --all-targets -- -D warnings

unit: build
	$(CARGO) test --workspace --exclude wasmpod-e2e
	$(CARGO) test $(WASMER)

# WasmEdge (README, "WasmEdge"): libwasmedge is in no registry these machines reach, so by
# default its adapter and shim are only type-checked; DOCS_RS=1 makes wasmedge-sys build without
# the library. With WASMEDGE_DIR set to an unpacked WasmEdge 0.17 release, the checks use the
# real library, the adapter's tests run, and the end-to-end suite also runs on wasmedge.
WASMEDGE_DIR ?=
WASMEDGE_LIB_DIR = $(patsubst %/,%,$(dir $(firstword $(wildcard \
	$(WASMEDGE_DIR)/lib64/libwasmedge.so $(WASMEDGE_DIR)/lib/libwasmedge.so))))
# The shim and the tests find libwasmedge at run time through this (containerd passes its
# environment on to the shims it starts).
WASMEDGE_RUN_ENV = LD_LIBRARY_PATH=$(WASMEDGE_LIB_DIR)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}

# The whole workspace with the feature, in one run: its feature unification then differs from
# `lint`'s only by what WasmEdge's dependencies add, so little is checked twice, and neither run
# invalidates the other's artifacts.
check-wasmedge: $(if $(WASMEDGE_DIR),deps wasmedge-lib)
	$(if $(WASMEDGE_DIR),,DOCS_RS=1) $(CARGO) clippy --workspace --all-targets \
		--features wasmpod-shim/wasmedge -- -D warnings

# What wasmedge-sys looks for under WASMEDGE_DIR, checked first so that a wrong directory is
# named as such instead of failing deep in a build script.
wasmedge-lib:
	@test -f "$(WASMEDGE_DIR)/include/wasmedge/wasmedge.h" || { echo "WASMEDGE_DIR=$(WASMEDGE_DIR): \
	no include/wasmedge/wasmedge.h; unpack a WasmEdge 0.17 release there (README, WasmEdge) or unset WASMEDGE_DIR" >&2; exit 1; }
	@test -n "$(WASMEDGE_LIB_DIR)" || { echo "WASMEDGE_DIR=$(WASMEDGE_DIR): no lib64/libwasmedge.so \
	or lib/libwasmedge.so; unpack a WasmEdge 0.17 release there (README, WasmEdge) or unset WASMEDGE_DIR" >&2; exit 1; }
	@grep -q '^#define WASMEDGE_VERSION "0\.17\.' "$(WASMEDGE_DIR)/include/wasmedge/version.h" || { \
	echo "WASMEDGE_DIR=$(WASMEDGE_DIR): not WasmEdge 0.17 (wasmedge-sdk 0.17.1 needs it): \
	$$(grep -h '^#define WASMEDGE_VERSION ' "$(WASMEDGE_DIR)/include/wasmedge/version.h" 2>/dev/null)" >&2; exit 1; }

build-wasmedge: deps wasmedge-lib
	$(CARGO) build -p wasmpod-shim --features wasmedge --bin containerd-shim-wasmedge-v1

unit-wasmedge: deps wasmedge-lib
	$(WASMEDGE_RUN_ENV) $(CARGO) test -p wasmpod-wasmedge --features wasmedge

# End to end: a private containerd driven by ctr and CRI, shims from the debug build. The same
# suite runs once per engine (E2E_ENGINE); the harness's own tests and the cluster-file checks
# run once.
E2E_ENGINES ?= wasmtime wasmer $(if $(WASMEDGE_DIR),wasmedge)

e2e: build $(if $(filter wasmedge,$(E2E_ENGINES)),build-wasmedge)
	$(CARGO) test -p wasmpod-e2e --lib --bins --test cluster_files
	set -e; for engine in $(E2E_ENGINES); do \
		echo "== end-to-end suite, engine $$engine"; \
		E2E_ENGINE=$$engine WASMPOD_SHIM_DIR=$(CARGO_TARGET_DIR)/debug $(if $(WASMEDGE_DIR),$(WASMEDGE_RUN_ENV)) \
			$(CARGO) test -p wasmpod-e2e --test e2e; \
	done

test: lint check-wasmedge unit $(if $(WASMEDGE_DIR),unit-wasmedge) e2e

demo: build
	WASMPOD_SHIM_DIR=$(CARGO_TARGET_DIR)/debug $(CARGO) run -q -p wasmpod-e2e --bin wasmpod-demo

# Release shim; compares against runc on the same containerd. Not a test.
# With WASMEDGE_DIR set, WasmEdge is measured too.
bench: deps $(if $(WASMEDGE_DIR),wasmedge-lib)
	tools/install-deps.sh --bench
	$(CARGO) build --release -p wasmpod-wasmtime --bins
	$(CARGO) build --release $(WASMER) --bins
	$(if $(WASMEDGE_DIR),$(CARGO) build --release -p wasmpod-shim --features wasmedge --bins)
	WASMPOD_SHIM_DIR=$(CARGO_TARGET_DIR)/release $(if $(WASMEDGE_DIR),$(WASMEDGE_RUN_ENV)) \
		$(CARGO) run -q --release -p wasmpod-e2e --bin wasmpod-bench

# Rebuild the committed test .wasm files from tests/fixtures/wasm-src (needs wasm32-wasip1).
fixtures:
	tests/fixtures/build.sh

clean:
	$(CARGO) clean

# Real clusters, for a machine with network (not part of `make test`, which only checks these
# files with tests/e2e/tests/cluster_files.rs). test/k8s: kind (needs docker, kind, kubectl);
# KEEP_CLUSTER=1 keeps the cluster. test/k3s: installs k3s, as root on a throwaway machine;
# UNINSTALL=1 removes it.
.PHONY: test/k8s test/k3s

test/k8s:
	test/k8s/run.sh

test/k3s:
	test/k3s/bootstrap.sh
