//! The extension point for wasm engines. Each engine in `executors/` implements [`WasmEngine`];
//! everything else (containers, detection, caching, the shim) is shared.

use std::path::PathBuf;

use crate::grants::{guest_dirs, Grants, GuestDir};
use crate::memory_limit::MemoryLimit;

/// What an engine reports; the message reaches the container's user (`Create`'s error, or the
/// guest's stderr when it ran).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The module is not valid wasm (or wat), in the engine's words.
    #[error("invalid wasm module: {0}")]
    Compile(String),
    /// An artifact could not be loaded.
    #[error("loading compiled module: {0}")]
    Load(String),
    /// The entry to call is not a function export.
    #[error("export `{func}` not found in module (function exports: {available})")]
    MissingExport {
        /// The export asked for.
        func: String,
        /// The module's function exports, as [`export_list`] shows them.
        available: String,
    },
    /// The guest trapped; the message includes the backtrace when the engine has one. The
    /// container exits with 134.
    #[error("wasm trap: {0}")]
    Trap(String),
    /// The guest grew its memory past its limit; the container exits with 137 and the shim
    /// reports an OOM.
    #[error(
        "wasm guest exceeded its memory limit: asked for {requested} bytes of linear memory, \
         the container allows the guest {limit} bytes"
    )]
    MemoryLimit {
        /// [`GuestContext::memory_limit`].
        limit: u64,
        /// The size the guest asked for.
        requested: u64,
    },
    /// A component given to an engine without [`WasmEngine::SUPPORTS_COMPONENTS`].
    #[error("a WASI component, but the {engine} engine runs core modules only (use wasmtime)")]
    ComponentUnsupported {
        /// [`WasmEngine::NAME`].
        engine: &'static str,
    },
    /// Anything else, with its context in the message.
    #[error("{0}")]
    Other(String),
}

/// What a guest gets from its container's spec.
#[derive(Debug, Clone)]
pub struct GuestContext {
    /// WASI args; `argv[0]` is the module path.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs (none when `wasmpod.io/env` is `none`).
    pub env: Vec<String>,
    /// The spec's working directory, preopened as `.` besides `/`.
    pub cwd: PathBuf,
    /// Export to call instead of `_start`.
    pub func: Option<String>,
    /// Most linear memory the guest may have, derived from the container's memory limit;
    /// it can change while the guest runs (read it at each growth, see
    /// [`WasmEngine::LIVE_MEMORY_LIMIT`]).
    pub memory_limit: Option<MemoryLimit>,
    /// What the pod's annotations grant (network, outgoing HTTP, preopens); the engine
    /// enforces them, see [`crate::grants`].
    pub grants: Grants,
}

impl GuestContext {
    /// The directories to preopen: `/` and the working directory as `.` by default, or those
    /// of `wasmpod.io/preopens`.
    pub fn dirs(&self) -> Vec<GuestDir> {
        guest_dirs(self.grants.preopens.as_deref(), &self.cwd)
    }
}

/// A wasm engine: what wasmpod needs from one to compile, cache, load and run guests.
///
/// One value is built per process with [`WasmEngine::new`]: in the compile process
/// ([`WasmEngine::precompile`]), and in the shim's zygote, which loads artifacts
/// ([`WasmEngine::load`]) and whose forks become the containers' init processes
/// ([`WasmEngine::run`]). The zygote must stay single-threaded until it forks: `new` and
/// `load` must not start threads (an engine that needs some starts them in `run`).
pub trait WasmEngine: Clone + Send + Sync + 'static {
    /// Engine name, as in the runtime name `io.containerd.<NAME>.v1`.
    const NAME: &'static str;
    /// Whether [`WasmEngine::precompile`] accepts WASI 0.2 components (`wasi:cli/run`).
    const SUPPORTS_COMPONENTS: bool = false;
    /// Whether [`WasmEngine::run`] reads [`GuestContext::memory_limit`] at each growth of a
    /// linear memory, so that a running guest's cap follows the container's updated memory
    /// limit. When false the shim refuses such updates of a running guest.
    const LIVE_MEMORY_LIMIT: bool = false;
    /// Whether guests can have sockets and name lookup (`wasi:sockets`), filtered by
    /// [`GuestContext::grants`]' network grant. When false, a `wasmpod.io/network` allow-list
    /// is refused at `Create` (`none` is accepted: it is what such guests have).
    const SOCKETS: bool = false;
    /// Whether guests can send `wasi:http` requests, filtered by the outbound HTTP grant. When
    /// false, a `wasmpod.io/outbound-http` allow-list is refused at `Create`.
    const OUTBOUND_HTTP: bool = false;
    /// A loaded module; cloned into the container's init process.
    type Module: Clone + Send + Sync + 'static;

    /// Builds the engine with wasmpod's settings (the same in every process of a node, so that
    /// artifacts stay loadable).
    fn new() -> Result<Self, EngineError>;

    /// Changes whenever artifacts compiled by an earlier build stop being loadable.
    fn compatibility_key(&self) -> String;

    /// Validates and compiles a module from wasm binary or text; returns the artifact bytes.
    /// Runs in the compile process (see [`crate::compile`]), never in the shim.
    fn precompile(&self, source: &[u8]) -> Result<Vec<u8>, EngineError>;

    /// Refuses, before compiling, a module that can never start: the compile process calls it
    /// first, so a large module that cannot run is refused in a moment instead of after its
    /// compile. `func` is the entry asked for (`None`: the default). The default checks a core
    /// module's entry export from its export section ([`crate::module_exports`]).
    fn check_before_compile(&self, source: &[u8], func: Option<&str>) -> Result<(), EngineError> {
        crate::module_exports::check_core_entry(source, func)
    }

    /// Loads an artifact that [`WasmEngine::precompile`] produced on this node. The cache has
    /// checked that these are exactly the bytes written for this module by an engine of this
    /// compatibility key (see [`crate::cache::entry`]).
    fn load(&self, artifact: Vec<u8>) -> Result<Self::Module, EngineError>;

    /// Names of the module's function exports.
    fn function_exports(&self, module: &Self::Module) -> Vec<String>;

    /// Checks that the guest can be started: `func`, or the default entry when `None`. The
    /// default suits core modules: `func` (or `_start`) must be a function export.
    fn check_entry(&self, module: &Self::Module, func: Option<&str>) -> Result<(), EngineError> {
        check_function_export(self.function_exports(module), func)
    }

    /// Runs the guest in the calling process (the container's init) and returns its exit code.
    /// A trap is [`EngineError::Trap`]; growing memory past `guest.memory_limit` is
    /// [`EngineError::MemoryLimit`].
    fn run(&self, module: &Self::Module, guest: &GuestContext) -> Result<i32, EngineError>;
}

/// Checks that `func` (or `_start` when none) is among `exports`.
pub fn check_function_export(exports: Vec<String>, func: Option<&str>) -> Result<(), EngineError> {
    let wanted = func.unwrap_or("_start");
    if exports.iter().any(|e| e == wanted) {
        return Ok(());
    }
    Err(EngineError::MissingExport {
        func: wanted.to_string(),
        available: export_list(&exports),
    })
}

/// Export names shown in an error: a module may have a million, the message stays short.
const LISTED_EXPORTS: usize = 20;

/// `a, b, c` (at most 20 names, then `… and N more`), or `none`.
pub fn export_list(exports: &[String]) -> String {
    if exports.is_empty() {
        return "none".into();
    }
    let mut text = exports
        .iter()
        .take(LISTED_EXPORTS)
        .map(|name| name.chars().take(64).collect::<String>())
        .collect::<Vec<_>>()
        .join(", ");
    if exports.len() > LISTED_EXPORTS {
        text.push_str(&format!(", … and {} more", exports.len() - LISTED_EXPORTS));
    }
    text
}

/// [`WasmEngine::check_entry`] as a free function.
pub fn check_entry<E: WasmEngine>(
    engine: &E,
    module: &E::Module,
    func: Option<&str>,
) -> Result<(), EngineError> {
    engine.check_entry(module, func)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_export_list_is_cut() {
        let names: Vec<String> = (0..100_000).map(|n| format!("f{n}")).collect();
        let err = check_function_export(names, Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("export `nope` not found in module (function exports: f0, f1,"));
        assert!(err.ends_with("f19, … and 99980 more)"), "{err}");
        assert_eq!(export_list(&[]), "none");
    }
}
