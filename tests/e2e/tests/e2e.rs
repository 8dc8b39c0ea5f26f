//! The end-to-end suite: `cargo test -p wasmpod-e2e --test e2e [-- FILTER...]`.
//!
//! Each `cases/*.rs` module holds related cases and exposes `fn cases() -> Vec<Case>`;
//! add the module here and extend the list in `main`. A case that applies to some engines only
//! is declared with `cases![only_on(ENGINES): ...]` and reported as skipped on the others.
//! `cases/support.rs`, `cases/cri_support.rs`, `cases/hostile_support.rs` and
//! `cases/pod_teardown.rs` are not case modules: they hold helpers shared by the cases, used
//! as `crate::support::...` and `crate::cri_support::...`.

use wasmpod_e2e::runner;

#[path = "../cases/bad_input.rs"]
mod bad_input;
#[path = "../cases/cache.rs"]
mod cache;
#[path = "../cases/cleanup.rs"]
mod cleanup;
#[path = "../cases/compile_once.rs"]
mod compile_once;
#[path = "../cases/compile_sandbox.rs"]
mod compile_sandbox;
#[path = "../cases/components.rs"]
mod components;
#[path = "../cases/cri_limits.rs"]
mod cri_limits;
#[path = "../cases/cri_pod.rs"]
mod cri_pod;
#[path = "../cases/cri_restart.rs"]
mod cri_restart;
#[path = "../cases/cri_support.rs"]
mod cri_support;
#[path = "../cases/cri_terminal.rs"]
mod cri_terminal;
#[path = "../cases/custom_host.rs"]
mod custom_host;
#[path = "../cases/exec.rs"]
mod exec;
#[path = "../cases/grants.rs"]
mod grants;
#[path = "../cases/grouping.rs"]
mod grouping;
#[path = "../cases/harness.rs"]
mod harness;
#[path = "../cases/hostile_exec.rs"]
mod hostile_exec;
#[path = "../cases/hostile_files.rs"]
mod hostile_files;
#[path = "../cases/hostile_guest.rs"]
mod hostile_guest;
#[path = "../cases/hostile_images.rs"]
mod hostile_images;
#[path = "../cases/hostile_modules.rs"]
mod hostile_modules;
#[path = "../cases/hostile_specs.rs"]
mod hostile_specs;
#[path = "../cases/hostile_support.rs"]
mod hostile_support;
#[path = "../cases/http.rs"]
mod http;
#[path = "../cases/isolation_host.rs"]
mod isolation_host;
#[path = "../cases/native.rs"]
mod native;
#[path = "../cases/network.rs"]
mod network;
#[path = "../cases/network_names.rs"]
mod network_names;
#[path = "../cases/node_install.rs"]
mod node_install;
#[path = "../cases/observe.rs"]
mod observe;
#[path = "../cases/oci_images.rs"]
mod oci_images;
#[path = "../cases/oom_live.rs"]
mod oom_live;
#[path = "../cases/otel.rs"]
mod otel;
#[path = "../cases/outbound_http.rs"]
mod outbound_http;
#[path = "../cases/pause.rs"]
mod pause;
#[path = "../cases/pod_teardown.rs"]
mod pod_teardown;
#[path = "../cases/runc.rs"]
mod runc;
#[path = "../cases/shared_pid.rs"]
mod shared_pid;
#[path = "../cases/signals.rs"]
mod signals;
#[path = "../cases/spec_features.rs"]
mod spec_features;
#[path = "../cases/start_path.rs"]
mod start_path;
#[path = "../cases/support.rs"]
mod support;
#[path = "../cases/task_api.rs"]
mod task_api;
#[path = "../cases/terminal.rs"]
mod terminal;
#[path = "../cases/volumes.rs"]
mod volumes;
#[path = "../cases/wasm.rs"]
mod wasm;
#[path = "../cases/workflow.rs"]
mod workflow;
#[path = "../cases/zygote.rs"]
mod zygote;

fn main() {
    let mut all = Vec::new();
    all.extend(runc::cases());
    all.extend(harness::cases());
    all.extend(wasm::cases());
    all.extend(components::cases());
    all.extend(cache::cases());
    all.extend(oci_images::cases());
    all.extend(native::cases());
    all.extend(bad_input::cases());
    all.extend(signals::cases());
    all.extend(observe::cases());
    all.extend(oom_live::cases());
    all.extend(cleanup::cases());
    all.extend(grouping::cases());
    all.extend(spec_features::cases());
    all.extend(exec::cases());
    all.extend(pause::cases());
    all.extend(cri_pod::cases());
    all.extend(cri_limits::cases());
    all.extend(cri_restart::cases());
    all.extend(cri_terminal::cases());
    all.extend(start_path::cases());
    all.extend(http::cases());
    all.extend(outbound_http::cases());
    all.extend(compile_sandbox::cases());
    all.extend(compile_once::cases());
    all.extend(hostile_guest::cases());
    all.extend(hostile_files::cases());
    all.extend(hostile_modules::cases());
    all.extend(hostile_images::cases());
    all.extend(hostile_specs::cases());
    all.extend(hostile_exec::cases());
    all.extend(isolation_host::cases());
    all.extend(node_install::cases());
    all.extend(custom_host::cases());
    all.extend(terminal::cases());
    all.extend(workflow::cases());
    all.extend(volumes::cases());
    all.extend(shared_pid::cases());
    all.extend(task_api::cases());
    all.extend(zygote::cases());
    all.extend(grants::cases());
    all.extend(otel::cases());
    all.extend(network::cases());
    all.extend(network_names::cases());
    runner::main(all);
}
