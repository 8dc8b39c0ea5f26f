//! Keeps the real-cluster files honest. `test/k8s` (kind) and `test/k3s` need docker, kind,
//! kubectl, systemd and network, so `make test` cannot run them; it checks here, on any machine
//! and without root, that they parse and agree with the code and with each other: the runtime
//! names against the shim's `[[bin]]` names, the containerd handlers against the RuntimeClass,
//! the Deployment against the RuntimeClass and the e2e wasm image, and the scripts and the
//! Makefile targets against the files they use. Every failure names the file and the mismatch.

mod containerd;
mod kind_k3s;
mod kubernetes;
mod node_installer;
mod support;
