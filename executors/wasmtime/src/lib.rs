//! wasmtime adapter: WASI preview1 core modules, WASI 0.2 command components and `wasi:http`
//! proxy components, compiled ahead of time by the node's compile process and loaded from the
//! node's module cache before the container's init process starts. A command runs once; a
//! proxy is served over HTTP.
//!
//! [`Wasmtime`] is the engine of `containerd-shim-wasmtime-v1`
//! (`wasmpod_shim::run::<Wasmtime>()`). [`WasmtimeWith`] is the same engine with host
//! functions of your own for core modules, described by a [`HostFunctions`] type.
//!
//! # Example: a host function
//!
//! An engine whose modules may import `demo::add(a: i32, b: i32) -> i32`. Its shim is
//! `fn main() { wasmpod_shim::run::<WithAdd>() }`, built as `containerd-shim-withadd-v1`
//! (runtime `io.containerd.withadd.v1`); `examples/custom-host/` in the repository is a
//! complete one, with its guest and an end-to-end test.
//!
//! ```
//! use wasmpod_wasmtime::{CoreState, HostFunctions, WasmtimeWith};
//! use wasmtime::Linker;
//!
//! pub struct Add;
//!
//! impl HostFunctions for Add {
//!     const NAME: &'static str = "withadd";
//!
//!     fn add_to_linker(linker: &mut Linker<CoreState>) -> wasmtime::Result<()> {
//!         linker.func_wrap("demo", "add", |a: i32, b: i32| a.wrapping_add(b))?;
//!         Ok(())
//!     }
//! }
//!
//! pub type WithAdd = WasmtimeWith<Add>;
//! ```

#![warn(missing_docs)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

mod component;
mod core;
mod host;
mod http;
mod limits;
mod outgoing;
mod wasi;

pub use crate::core::CoreState;
pub use host::{HostFunctions, WasmtimeWith};

use wasmpod_runtime::engine::check_function_export;
use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, ExternType, Module, Precompiled};
use wasmtime_wasi::I32Exit;

/// The wasmtime engine: WASI preview1 for core modules, WASI 0.2 for components.
#[derive(Clone)]
pub struct Wasmtime {
    engine: Engine,
}

/// A loaded guest: a core module or a component.
#[derive(Clone)]
pub enum Guest {
    /// A core module: runs `_start` (or the `#func` export) with WASI preview1.
    Module(Module),
    /// A component: a `wasi:cli/run` command, or a `wasi:http` proxy that is served.
    Component(Component),
}

fn other(context: &str) -> impl FnOnce(wasmtime::Error) -> EngineError + '_ {
    move |e| EngineError::Other(format!("{context}: {e:#}"))
}

/// The guest's exit code from the result of its entry: the memory cap, `proc_exit`/`exit(n)`
/// (`I32Exit`), or a trap.
fn exit_code(
    result: wasmtime::Result<i32>,
    exceeded: Option<usize>,
    guest: &GuestContext,
) -> Result<i32, EngineError> {
    if let (Some(requested), Some(limit)) = (exceeded, guest.memory_limit) {
        return Err(EngineError::MemoryLimit {
            limit: limit.bytes(),
            requested: requested as u64,
        });
    }
    match result {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(EngineError::Trap(format!("{e:?}"))),
        },
    }
}

/// The binary header of a component: `\0asm`, then version 0x0d and layer 1 (core modules have
/// version 1, layer 0).
fn is_component(source: &[u8]) -> bool {
    source.starts_with(b"\0asm") && source.get(6..8) == Some(&[1, 0])
}

impl WasmEngine for Wasmtime {
    const NAME: &'static str = "wasmtime";
    const SUPPORTS_COMPONENTS: bool = true;
    const LIVE_MEMORY_LIMIT: bool = true;
    const SOCKETS: bool = true;
    const OUTBOUND_HTTP: bool = true;
    type Module = Guest;

    fn new() -> Result<Self, EngineError> {
        let mut config = Config::new();
        // Linear memory is initialised by copying the data segments at instantiation. A
        // copy-on-write memory image would be a memfd created in the container's init, after its
        // descriptors are closed (wasmpod_runtime::guest) and under the guest's seccomp
        // allow-list, which has no memfd_create; modules are loaded from bytes, so there is no
        // artifact file to map an image from either.
        config.memory_init_cow(false);
        let engine = Engine::new(&config).map_err(other("wasmtime engine"))?;
        Ok(Self { engine })
    }

    fn compatibility_key(&self) -> String {
        let mut hasher = DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("wasmtime-48.0.8-{:016x}", hasher.finish())
    }

    fn precompile(&self, source: &[u8]) -> Result<Vec<u8>, EngineError> {
        let compiled = if is_component(source) {
            self.engine.precompile_component(source)
        } else {
            self.engine.precompile_module(source)
        };
        compiled.map_err(|e| EngineError::Compile(format!("{e:#}")))
    }

    fn load(&self, artifact: Vec<u8>) -> Result<Guest, EngineError> {
        let load_error = |e: wasmtime::Error| EngineError::Load(format!("{e:#}"));
        let kind = Engine::detect_precompiled(&artifact)
            .ok_or_else(|| EngineError::Load("not a wasmtime artifact".into()))?;
        // SAFETY: the cache handed over exactly the bytes `precompile` wrote for this module
        // with an engine of this compatibility key (digest-checked entry, root-only cache).
        let loaded = match kind {
            Precompiled::Module => {
                unsafe { Module::deserialize(&self.engine, &artifact) }.map(Guest::Module)
            }
            Precompiled::Component => {
                unsafe { Component::deserialize(&self.engine, &artifact) }.map(Guest::Component)
            }
        };
        loaded.map_err(load_error)
    }

    fn function_exports(&self, guest: &Guest) -> Vec<String> {
        match guest {
            Guest::Module(module) => module
                .exports()
                .filter(|e| matches!(e.ty(), ExternType::Func(_)))
                .map(|e| e.name().to_string())
                .collect(),
            Guest::Component(_) => Vec::new(),
        }
    }

    fn check_entry(&self, guest: &Guest, func: Option<&str>) -> Result<(), EngineError> {
        match guest {
            Guest::Module(_) => check_function_export(self.function_exports(guest), func),
            Guest::Component(c) => component::check_entry(&self.engine, c, func),
        }
    }

    fn run(&self, guest: &Guest, context: &GuestContext) -> Result<i32, EngineError> {
        match guest {
            Guest::Module(module) => core::run(&self.engine, module, context, core::wasi_only),
            Guest::Component(c) => match component::kind(&self.engine, c)? {
                component::Kind::Command => component::run(&self.engine, c, context),
                component::Kind::Proxy => http::serve(&self.engine, c, context),
            },
        }
    }
}
