//! Host functions of your own: an engine that is this adapter plus imports you define.
//!
//! Implement [`HostFunctions`] and hand [`WasmtimeWith<YourFunctions>`] to
//! `wasmpod_shim::run`; the result is a complete shim (runtime `io.containerd.<NAME>.v1`) whose
//! core modules may import your functions next to WASI preview1. `examples/custom-host/` in the
//! repository is a worked example.
//!
//! Only core modules see the functions. Components (WASI 0.2 commands and `wasi:http` proxies)
//! are linked as by [`Wasmtime`]: WASI 0.2 only, so a component cannot import them.

use std::marker::PhantomData;

use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};
use wasmtime::Linker;

use crate::core::{self, CoreState};
use crate::{Guest, Wasmtime};

/// Functions a shim built on this adapter offers to every core module it runs.
pub trait HostFunctions: Send + Sync + 'static {
    /// The engine's name: the shim is `containerd-shim-<NAME>-v1`, its runtime
    /// `io.containerd.<NAME>.v1`, and its module cache a folder of its own.
    const NAME: &'static str;

    /// Adds the functions to a module's linker, which already holds WASI preview1 (so a name
    /// WASI has is an error, not an override). Called in the container's init process for every
    /// run, after the guest's seccomp allow-list is installed: a function may only make the
    /// system calls the guest profile allows (`seccomp-profiles/wasm-guest.json`; writing to an
    /// open descriptor is fine, opening a file or socket is not). An error from a function traps
    /// the guest, which then exits with 134 and the error on its stderr.
    fn add_to_linker(linker: &mut Linker<CoreState>) -> wasmtime::Result<()>;
}

/// The wasmtime engine with the host functions `H` added for core modules.
pub struct WasmtimeWith<H: HostFunctions> {
    inner: Wasmtime,
    functions: PhantomData<fn() -> H>,
}

impl<H: HostFunctions> Clone for WasmtimeWith<H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            functions: PhantomData,
        }
    }
}

impl<H: HostFunctions> WasmEngine for WasmtimeWith<H> {
    const NAME: &'static str = H::NAME;
    const SUPPORTS_COMPONENTS: bool = Wasmtime::SUPPORTS_COMPONENTS;
    const LIVE_MEMORY_LIMIT: bool = Wasmtime::LIVE_MEMORY_LIMIT;
    const SOCKETS: bool = Wasmtime::SOCKETS;
    const OUTBOUND_HTTP: bool = Wasmtime::OUTBOUND_HTTP;
    type Module = Guest;

    fn new() -> Result<Self, EngineError> {
        Ok(Self {
            inner: Wasmtime::new()?,
            functions: PhantomData,
        })
    }

    fn compatibility_key(&self) -> String {
        self.inner.compatibility_key()
    }

    fn precompile(&self, source: &[u8]) -> Result<Vec<u8>, EngineError> {
        self.inner.precompile(source)
    }

    fn load(&self, artifact: Vec<u8>) -> Result<Guest, EngineError> {
        self.inner.load(artifact)
    }

    fn function_exports(&self, guest: &Guest) -> Vec<String> {
        self.inner.function_exports(guest)
    }

    fn check_entry(&self, guest: &Guest, func: Option<&str>) -> Result<(), EngineError> {
        self.inner.check_entry(guest, func)
    }

    fn run(&self, guest: &Guest, context: &GuestContext) -> Result<i32, EngineError> {
        match guest {
            Guest::Module(module) => {
                core::run(&self.inner.engine, module, context, H::add_to_linker)
            }
            Guest::Component(_) => self.inner.run(guest, context),
        }
    }
}
