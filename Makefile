# wasmpod: `make demo` runs the main job, `make test` the whole suite (both as root on Debian 12).

# One shared target dir outside the clone when the machine has one (builds are slow on 2 cores).
CARGO_TARGET_DIR ?= $(if $(wildcard /var/cache/wasmpod-target),/var/cache/wasmpod-target,$(CURDIR)/target)
export CARGO_TARGET_DIR
CARGO ?= cargo

.PHONY: all deps build lint unit e2e test demo bench fixtures clean

all: build

deps:
	tools/install-deps.sh

build: deps
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: build
	$(CARGO) test --workspace --exclude wasmpod-e2e

# End to end: a private containerd driven by ctr and CRI, shims from the debug build. The same
# suite runs once per engine (E2E_ENGINE); the harness's own tests and the cluster-file checks
# run once.
E2E_ENGINES ?= wasmtime wasmer

e2e: build
	$(CARGO) test -p wasmpod-e2e --lib --bins --test cluster_files
	set -e; for engine in $(E2E_ENGINES); do \
		echo "== end-to-end suite, engine $$engine"; \
		E2E_ENGINE=$$engine WASMPOD_SHIM_DIR=$(CARGO_TARGET_DIR)/debug \
			$(CARGO) test -p wasmpod-e2e --test e2e; \
	done

test: lint unit e2e

demo: build
	WASMPOD_SHIM_DIR=$(CARGO_TARGET_DIR)/debug $(CARGO) run -q -p wasmpod-e2e --bin wasmpod-demo

# Release shim; compares against runc on the same containerd. Not a test.
bench: deps
	tools/install-deps.sh --bench
	$(CARGO) build --release -p wasmpod-shim
	WASMPOD_SHIM_DIR=$(CARGO_TARGET_DIR)/release $(CARGO) run -q --release -p wasmpod-e2e --bin wasmpod-bench

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
