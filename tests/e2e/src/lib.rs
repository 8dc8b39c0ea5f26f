//! End-to-end test harness for wasmpod: a private containerd, `ctr` helpers, locally built
//! images, leak checks and a small runner for a `harness = false` test binary.
//!
//! A case is `fn(&Env) -> anyhow::Result<()>`; register cases with [`cases!`] and hand them
//! to [`runner::main`].

pub mod args;
pub mod config;
pub mod containerd;
pub mod cri;
pub mod ctr;
pub mod dns;
pub mod engine;
pub mod env;
pub mod events;
pub mod images;
pub mod leaks;
pub mod mounts;
pub mod otlp;
pub mod paths;
pub mod process;
pub mod pty;
pub mod runner;
pub mod shim_api;
pub mod wasm_gen;

pub use containerd::Containerd;
pub use ctr::Ctr;
pub use engine::Engine;
pub use env::Env;
pub use images::{BUSYBOX_IMAGE, BUSYBOX_MODULE, HELLO_TXT, WASM_IMAGE};
pub use process::{CmdOutput, Running};
pub use runner::{Case, CaseFn};

/// The runtime name of the wasmpod shim with the default engine (the demo and the bench use
/// it; cases use [`Env::runtime`], which follows `E2E_ENGINE`).
pub const WASM_RUNTIME: &str = "io.containerd.wasmtime.v1";
/// containerd's runc shim, used to check the harness itself.
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
