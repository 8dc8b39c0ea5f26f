//! wasmpod's runtime: real Linux containers through youki's libcontainer, whose init process
//! runs either a wasm module in a pluggable engine or a native binary.
//!
//! This crate is the engine-independent half of a wasmpod shim. An engine is one type that
//! implements [`WasmEngine`] (compile a module, load the artifact, run it); `wasmpod-shim`
//! turns such a type into a containerd shim, and everything in between is here:
//!
//! - [`container`]: the lifecycle verbs (create, start, kill, delete, exec, pause, update,
//!   stats) over libcontainer, with [`Zygote`] doing every fork from a single-threaded process;
//! - [`detect`]: whether a container runs wasm or a native program, and why;
//! - [`compile`] and [`cache`]: tenant modules are compiled in a sandboxed compile process
//!   into a root-only cache keyed by the module's digest and the engine's compatibility key;
//! - [`seccomp`], [`spec`], [`mount`], [`oom`], [`resolve`]: the pieces those share.
//!
//! # Example: an engine of your own
//!
//! A [`WasmEngine`] decorating another one, logging every guest's exit code. Its shim is
//! `fn main() { wasmpod_shim::run::<Logged<wasmpod_wasmtime::Wasmtime>>() }`, built as
//! `containerd-shim-logged-v1` (runtime `io.containerd.logged.v1`). Engines that only add host
//! functions to wasmtime have a shorter way: `wasmpod_wasmtime::HostFunctions`.
//!
//! ```
//! use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};
//!
//! /// `E`, with each guest's exit code in the shim's log.
//! #[derive(Clone)]
//! pub struct Logged<E>(E);
//!
//! impl<E: WasmEngine> WasmEngine for Logged<E> {
//!     const NAME: &'static str = "logged";
//!     const SUPPORTS_COMPONENTS: bool = E::SUPPORTS_COMPONENTS;
//!     type Module = E::Module;
//!
//!     fn new() -> Result<Self, EngineError> {
//!         E::new().map(Logged)
//!     }
//!     fn compatibility_key(&self) -> String {
//!         self.0.compatibility_key()
//!     }
//!     fn precompile(&self, source: &[u8]) -> Result<Vec<u8>, EngineError> {
//!         self.0.precompile(source)
//!     }
//!     fn load(&self, artifact: Vec<u8>) -> Result<Self::Module, EngineError> {
//!         self.0.load(artifact)
//!     }
//!     fn function_exports(&self, module: &Self::Module) -> Vec<String> {
//!         self.0.function_exports(module)
//!     }
//!     fn check_entry(&self, module: &Self::Module, func: Option<&str>) -> Result<(), EngineError> {
//!         self.0.check_entry(module, func)
//!     }
//!     fn run(&self, module: &Self::Module, guest: &GuestContext) -> Result<i32, EngineError> {
//!         let result = self.0.run(module, guest);
//!         tracing::info!(module = ?guest.args.first(), ?result, "guest ended");
//!         result
//!     }
//! }
//! ```

#![warn(missing_docs)]

pub mod cache;
pub mod compile;
pub mod console;
pub mod container;
pub mod detect;
pub mod engine;
mod error_kind;
mod executor;
pub mod grants;
mod guest;
pub mod memory_limit;
pub mod module_exports;
pub mod mount;
pub mod oom;
pub mod resolve;
pub mod seccomp;
pub mod spec;
mod stdio;
mod zygote;

pub use engine::{EngineError, GuestContext, WasmEngine};
pub use error_kind::ErrorKind;
pub use memory_limit::MemoryLimit;
pub use zygote::{serve_inherited as zygote_main, Zygote, ZygoteError, ZYGOTE_ARG};

/// The `tracing` target of the spans a shim may export as OpenTelemetry spans (Create's steps
/// here: detection, cache lookup, compile, zygote create). Without a subscriber they cost a
/// disabled check; a `log` logger should skip the target (their `++`/`--` lifecycle lines).
pub const TRACE_TARGET: &str = "wasmpod::trace";
