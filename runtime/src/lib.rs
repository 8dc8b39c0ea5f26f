//! wasmpod's runtime: real Linux containers through youki's libcontainer, whose init process
//! runs either a wasm module in a pluggable engine or a native binary.
//!
//! Layers: [`container`] (generic lifecycle), [`detect`] + [`compile`] + [`cache`] +
//! [`executor`] (wasm policy), [`engine::WasmEngine`] (implemented once per engine in `executors/`).

pub mod cache;
pub mod compile;
pub mod container;
pub mod detect;
pub mod engine;
pub mod executor;
pub mod guest;
pub mod mount;
pub mod oom;
pub mod resolve;
pub mod seccomp;
pub mod spec;
pub mod stdio;
pub mod zygote;

pub use engine::{EngineError, GuestContext, WasmEngine};
pub use zygote::Zygote;
