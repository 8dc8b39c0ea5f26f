//! The containerd shim (runtime v2, ttrpc task service) shared by every engine's binary.
//!
//! One function, [`run`], is a complete shim for any [`WasmEngine`]: `start` (find or start the
//! pod's shim daemon and print its address), `delete` (clean up after a dead shim), the daemon
//! itself (the task service under `containerd.task.v2` and `v3`, events, logs, OOM and exit
//! reporting, the zygote that forks containers), and the compile process the daemon re-executes
//! itself as. containerd finds the binary by its name: the runtime `io.containerd.<NAME>.v1`
//! is the binary `containerd-shim-<NAME>-v1` on its PATH, `NAME` being [`WasmEngine::NAME`].
//!
//! # Example
//!
//! The body of `main` of `containerd-shim-wasmtime-v1`
//! (`executors/wasmtime/src/bin/containerd-shim-wasmtime-v1.rs`), all of it:
//!
//! ```ignore
//! wasmpod_shim::run::<wasmpod_wasmtime::Wasmtime>();
//! ```
//!
//! (This crate links no engine; the binary lives with its engine.) The same for any engine:
//!
//! ```no_run
//! fn main_of<E: wasmpod_runtime::WasmEngine>() {
//!     wasmpod_shim::run::<E>();
//! }
//! ```
//!
//! A shim with host functions of its own: `wasmpod_wasmtime::HostFunctions` and
//! `examples/custom-host/` in the repository. Another engine: implement [`WasmEngine`]
//! (see `wasmpod_runtime`).

#![warn(missing_docs)]

mod console;
mod create;
mod daemon;
mod delete;
mod events;
mod exec;
mod execs;
mod image_layers;
mod lifetime;
mod logging;
mod metrics;
mod oom;
mod oom_watch;
mod otel;
mod pause;
mod pty_copy;
mod service;
mod start;
mod start_lock;
mod status;
mod tasks;
mod update;

use std::sync::OnceLock;

use wasmpod_runtime::{WasmEngine, Zygote};

static ZYGOTE: OnceLock<Zygote> = OnceLock::new();

fn fail(engine: &str, e: impl std::fmt::Display) -> ! {
    // stderr reaches the containerd user: "failed to start shim: start failed: <this>".
    eprintln!("containerd-shim-{engine}-v1: {e}");
    std::process::exit(1)
}

/// The `main` of `containerd-shim-<E::NAME>-v1`: parses containerd's shim flags and runs the
/// action they ask for (`start`, `delete`, the daemon with `-socket`), or serves as a compile
/// process or as a fresh zygote when the daemon executes itself as one.
/// Returns when the action is done; a failure is printed on stderr (containerd shows it to the
/// user) and ends the process with exit code 1.
pub fn run<E: WasmEngine>() {
    let args: Vec<String> = std::env::args().collect();
    // A compile process (see `wasmpod_runtime::compile`): before anything else of the shim.
    if args.get(1).map(String::as_str) == Some(wasmpod_runtime::compile::COMPILE_ARG) {
        wasmpod_runtime::compile::child::main::<E>();
    }
    // A fresh zygote (see `wasmpod_runtime::Zygote`): single-threaded from its first line.
    if args.get(1).map(String::as_str) == Some(wasmpod_runtime::ZYGOTE_ARG) {
        let fd = args.get(2).map_or("", String::as_str);
        match wasmpod_runtime::zygote_main::<E>(fd) {
            Ok(never) => match never {},
            Err(e) => fail(E::NAME, e),
        }
    }
    let flags = containerd_shim::parse(args.get(1..).unwrap_or_default())
        .unwrap_or_else(|e| fail(E::NAME, e));
    if flags.version {
        println!(
            "containerd-shim-{}-v1 {}",
            E::NAME,
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    if flags.namespace.is_empty() {
        fail(E::NAME, "-namespace is required");
    }
    let result = match flags.action.as_str() {
        "start" => start::run(&flags).map_err(anyhow::Error::from),
        "delete" => delete::run(&flags),
        "" if !flags.socket.is_empty() => {
            // The log FIFO is opened relative to the bundle we start in; then leave the bundle:
            // it is the first container's, and containerd removes it while the pod lives on.
            if let Err(e) = logging::init(flags.debug) {
                eprintln!("shim logger: {e}");
            }
            if let Err(e) = std::env::set_current_dir("/") {
                fail(E::NAME, format!("chdir /: {e}"));
            }
            // First thing, while the process has one thread: see `wasmpod_runtime::zygote`.
            let zygote = Zygote::spawn::<E>().unwrap_or_else(|e| fail(E::NAME, e));
            let zygote = ZYGOTE.get_or_init(|| zygote);
            daemon::run::<E>(&flags, zygote)
        }
        other => Err(anyhow::anyhow!(
            "unknown action {other:?} (expected start or delete)"
        )),
    };
    if let Err(e) = result {
        fail(E::NAME, format!("{e:#}"));
    }
}
