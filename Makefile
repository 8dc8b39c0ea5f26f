# wasmpod: `make demo` runs the main job, `make test` the whole suite (both as root on Debian 12).

# One shared target dir outside the clone when the machine has one (builds are slow on 2 cores).
CARGO_TARGET_DIR ?= $(if $(wildcard /var/cache/wasmpod-target),/var/cache/wasmpod-target,$(CURDIR)/target)
export CARGO_TARGET_DIR
CARGO ?= cargo

.PHONY: all deps build build-debug check lint doc publish-check unit e2e test demo bench fixtures clean
.PHONY: install load test-image
.PHONY: check-wasmedge wasmedge-lib build-wasmedge unit-wasmedge

all: build

deps:
	tools/install-deps.sh

# The wasmer engine and its shim are a workspace of their own, with their own lock file
# (executors/wasmer/Cargo.toml says why); built into the same target directory.
WASMER = --manifest-path executors/wasmer/Cargo.toml

# Release shims (every engine's and the example's containerd-shim-customhost-v1) and tools
# (wasmpod-image, wasmpod-node), for `make install` and `make load`.
build: deps
	$(CARGO) build --release --workspace --bins
	$(CARGO) build --release $(WASMER) --bins

# The debug build that the tests, the demo and CI use (CI never builds a release).
build-debug: deps
	$(CARGO) build --workspace --bins
	$(CARGO) build $(WASMER) --bins

check: lint

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt $(WASMER) -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy $(WASMER) --all-targets -- -D warnings

# The library crates' API docs, warnings (e.g. a public item without docs) as errors.
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace

# `cargo publish --dry-run` of the library crates: packaging checks the manifests, the versions
# on path dependencies and the file list; verifying also compiles the packaged sources alone in
# $(CARGO_TARGET_DIR)/package, which catches a file from outside the crate (the seccomp profiles
# reach the runtime through symlinks in runtime/seccomp-profiles/ for that reason).
# Verified: the runtime, the shim library (it links no engine) and the image tool (measured
# cold on the 2-core VM: 2.2 min for the runtime and the image tool, then incremental).
# Packaged only: the wasmtime and WasmEdge adapters, whose verification is one more cold build
# of wasmtime and cranelift (measured: 8 min for wasmpod-wasmtime, which passed) for sources
# the workspace build already compiles. Not published: the wasmer adapter, a workspace of its
# own (executors/wasmer/Cargo.toml), and the example.
PUBLISH_VERIFIED = -p wasmpod-runtime -p wasmpod-shim -p wasmpod-oci-image
PUBLISH_PACKAGED = -p wasmpod-wasmtime -p wasmpod-wasmedge
publish-check:
	$(CARGO) publish --dry-run --allow-dirty $(PUBLISH_VERIFIED)
	$(CARGO) publish --dry-run --allow-dirty --no-verify $(PUBLISH_VERIFIED) $(PUBLISH_PACKAGED)

unit: build-debug
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
		--features wasmpod-wasmedge/wasmedge -- -D warnings

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
	$(CARGO) build -p wasmpod-wasmedge --features wasmedge --bin containerd-shim-wasmedge-v1

unit-wasmedge: deps wasmedge-lib
	$(WASMEDGE_RUN_ENV) $(CARGO) test -p wasmpod-wasmedge --features wasmedge

# End to end: a private containerd driven by ctr and CRI, shims from the debug build. The same
# suite runs once per engine (E2E_ENGINE); the harness's own tests and the cluster-file checks
# run once.
E2E_ENGINES ?= wasmtime wasmer $(if $(WASMEDGE_DIR),wasmedge)

e2e: build-debug $(if $(filter wasmedge,$(E2E_ENGINES)),build-wasmedge)
	$(CARGO) test -p wasmpod-e2e --lib --bins --test cluster_files
	set -e; for engine in $(E2E_ENGINES); do \
		echo "== end-to-end suite, engine $$engine"; \
		E2E_ENGINE=$$engine WASMPOD_SHIM_DIR=$(CARGO_TARGET_DIR)/debug $(if $(WASMEDGE_DIR),$(WASMEDGE_RUN_ENV)) \
			$(CARGO) test -p wasmpod-e2e --test e2e; \
	done

# deps first: lint, doc and publish-check already build crates that need protoc and libseccomp.
test: deps lint doc publish-check check-wasmedge unit $(if $(WASMEDGE_DIR),unit-wasmedge) e2e

demo: build-debug
	WASMPOD_SHIM_DIR=$(CARGO_TARGET_DIR)/debug $(CARGO) run -q -p wasmpod-e2e --bin wasmpod-demo

# Release shim; compares against runc on the same containerd. Not a test.
# With WASMEDGE_DIR set, WasmEdge is measured too.
# Reuses `make build`'s release binaries (the same feature set, so nothing is built twice).
bench: build $(if $(WASMEDGE_DIR),wasmedge-lib)
	tools/install-deps.sh --bench
	$(if $(WASMEDGE_DIR),$(CARGO) build --release -p wasmpod-wasmedge --features wasmedge --bins)
	WASMPOD_SHIM_DIR=$(CARGO_TARGET_DIR)/release $(if $(WASMEDGE_DIR),$(WASMEDGE_RUN_ENV)) \
		$(CARGO) run -q --release -p wasmpod-e2e --bin wasmpod-bench

# Rebuild the committed test .wasm files from tests/fixtures/wasm-src (needs wasm32-wasip1).
fixtures:
	tests/fixtures/build.sh

clean:
	$(CARGO) clean

# The quick start (README): `make build`, `sudo make install`, `make load`, then `ctr run`.
# PROFILE=debug installs and uses the debug build instead (the e2e suite does).
PROFILE ?= release
BIN_DIR = $(CARGO_TARGET_DIR)/$(PROFILE)
PREFIX ?= /usr/local
SHIMS = containerd-shim-wasmtime-v1 containerd-shim-wasmer-v1 containerd-shim-customhost-v1
# Installed too when they were built: the WasmEdge shim (`make build-wasmedge`) and the node
# installer `wasmpod-node` (README, "Installing on a node").
OPTIONAL_BINS = containerd-shim-wasmedge-v1 wasmpod-node

install:
	@for bin in $(SHIMS); do test -x "$(BIN_DIR)/$$bin" || { echo "$(BIN_DIR)/$$bin is missing: \
	run \`make $(if $(filter debug,$(PROFILE)),build-debug,build)\` first" >&2; exit 1; }; done
	install -d "$(DESTDIR)$(PREFIX)/bin"
	install -m 755 $(addprefix $(BIN_DIR)/,$(SHIMS)) \
		$(wildcard $(addprefix $(BIN_DIR)/,$(OPTIONAL_BINS))) "$(DESTDIR)$(PREFIX)/bin/"

# The demo images, written by wasmpod-image (no registry): wasi-demo-app as a rootfs image
# (`:latest`) and as an OCI wasm image (`:oci`, the module as a wasm layer), and the custom
# host example's guest (README, "Build your own shim").
IMAGE_DIR ?= $(CARGO_TARGET_DIR)/images
IMAGE_TOOL = $(BIN_DIR)/wasmpod-image
DEMO_APP = tests/fixtures/wasm/wasi-demo-app.wasm
DEMO_DATA = /data/hello.txt=tests/fixtures/demo/hello.txt
DEMO_IMAGES = $(IMAGE_DIR)/wasi-demo-app.tar $(IMAGE_DIR)/wasi-demo-oci.tar $(IMAGE_DIR)/customhost-demo.tar

test-image:
	@test -x "$(IMAGE_TOOL)" || { echo "$(IMAGE_TOOL) is missing: run \
	\`make $(if $(filter debug,$(PROFILE)),build-debug,build)\` first" >&2; exit 1; }
	mkdir -p "$(IMAGE_DIR)"
	"$(IMAGE_TOOL)" --name docker.io/wasmpod/wasi-demo-app:latest --out "$(IMAGE_DIR)/wasi-demo-app.tar" \
		--file /wasi-demo-app.wasm=$(DEMO_APP) --file $(DEMO_DATA) \
		--entrypoint /wasi-demo-app.wasm --cmd daemon
	"$(IMAGE_TOOL)" --name docker.io/wasmpod/wasi-demo-app:oci --out "$(IMAGE_DIR)/wasi-demo-oci.tar" \
		--wasm-module $(DEMO_APP) --file $(DEMO_DATA) \
		--entrypoint /wasi-demo-app.wasm --cmd daemon
	"$(IMAGE_TOOL)" --name docker.io/wasmpod/customhost-demo:latest --out "$(IMAGE_DIR)/customhost-demo.tar" \
		--file /custom-log.wat=tests/fixtures/wat/custom-log.wat --entrypoint /custom-log.wat

# Imports the demo images into the containerd at CONTAINERD_ADDRESS, in the namespaces ctr
# (default) and Kubernetes (k8s.io) use; ctr runs with sudo unless make runs as root.
CONTAINERD_ADDRESS ?= /run/containerd/containerd.sock
CONTAINERD_NAMESPACES ?= default k8s.io
CTR ?= ctr
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo)

load: test-image
	set -e; for ns in $(CONTAINERD_NAMESPACES); do \
		for tar in $(DEMO_IMAGES); do \
			$(SUDO) $(CTR) -a "$(CONTAINERD_ADDRESS)" -n $$ns images import --all-platforms "$$tar"; \
		done; \
	done

# Real clusters, for a machine with network (not part of `make test`, which only checks these
# files with tests/e2e/tests/cluster_files/). test/k8s: kind (needs docker, kind, kubectl);
# KEEP_CLUSTER=1 keeps the cluster. test/k3s: installs k3s, as root on a throwaway machine;
# UNINSTALL=1 removes it.
.PHONY: test/k8s test/k3s

test/k8s:
	test/k8s/run.sh

test/k3s:
	test/k3s/bootstrap.sh
