//! WasmEdge adapter (runtime `io.containerd.wasmedge.v1`): WASI preview1 core modules through
//! libwasmedge's built-in WASI, compiled ahead of time by WasmEdge's LLVM compiler in the shim and
//! loaded from the node's module cache in the container's init process.
//!
//! The engine needs libwasmedge 0.17 at build and run time, so everything that touches it is
//! behind the `wasmedge` feature (off by default: the crate is then only the parts below that
//! need no library, with their unit tests). `DOCS_RS=1` lets wasmedge-sys build without the
//! library, which is how machines without it type-check the adapter.
//!
//! Without the library:
//! - `artifact`: the compatibility key of the cache's artifacts.
//! - `guest`: the guest's WASI args, env and preopens in the form libwasmedge takes.
//! - `memory`: the container memory limit as libwasmedge's page limit, and how a refusal shows.
//!
//! With it (feature `wasmedge`): `engine` ([`WasmEngine`](wasmpod_runtime::WasmEngine)),
//! `config` (libwasmedge configurations), `compile` (AOT), `run` (one guest run) and `log`
//! (libwasmedge's log, captured per call instead of going to the container's stderr).

// Without the engine, the library-free helpers are only used by their tests.
#![cfg_attr(not(feature = "wasmedge"), allow(dead_code))]

mod artifact;
mod guest;
mod memory;

#[cfg(feature = "wasmedge")]
mod compile;
#[cfg(feature = "wasmedge")]
mod config;
#[cfg(feature = "wasmedge")]
mod engine;
#[cfg(feature = "wasmedge")]
mod log;
#[cfg(feature = "wasmedge")]
mod run;

#[cfg(feature = "wasmedge")]
pub use engine::{WasmEdge, WasmEdgeModule};
