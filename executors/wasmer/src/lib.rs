//! wasmer adapter (runtime `io.containerd.wasmer.v1`): WASI preview1 core modules through
//! wasmer-wasix, compiled ahead of time with Cranelift by the node's compile process and loaded
//! from the node's module cache before the container's init process starts.
//!
//! - `artifact`: the compatibility key of the cache's artifacts.
//! - `limits`: the container memory limit as a cap on linear memory.
//! - `stdio`: the guest's stdout/stderr on the process's fds.
//! - `run`: one guest run.
//!
//! `new` and `load` start no thread (the zygote worker forks right after them); `run` starts
//! a tokio runtime with one worker, inside the container.

mod artifact;
mod limits;
mod read_only_mounts;
mod run;
mod stdio;

use wasmer::sys::{Cranelift, EngineBuilder};
use wasmer::{Engine, ExternType, Module};
use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};

/// The engine adapter. It holds no wasmer engine: each compiled or loaded module gets its own
/// (see [`WasmerModule`]).
#[derive(Clone)]
pub struct Wasmer {
    /// Cached: [`artifact::compatibility_key`] is asked for on every cache lookup.
    key: String,
}

/// A loaded module with the engine that holds its code.
///
/// A wasmer engine keeps the machine code of every module compiled or loaded through it until
/// the engine itself is dropped (wasmer 7.4 never unmaps a module's code on its own). The shim
/// is long-lived and compiles or loads a module on every Create, so one shared engine would grow
/// with every container. Building an engine is cheap (a Cranelift ISA and the target's CPU
/// features, no thread), so every module owns one, and its code goes away with it.
#[derive(Clone)]
pub struct WasmerModule {
    // Declared first: dropped before the engine that holds its code.
    module: Module,
    engine: Engine,
}

fn engine() -> Engine {
    EngineBuilder::new(Cranelift::new()).engine().into()
}

impl WasmEngine for Wasmer {
    const NAME: &'static str = "wasmer";
    const LIVE_MEMORY_LIMIT: bool = true;
    type Module = WasmerModule;

    fn new() -> Result<Self, EngineError> {
        Ok(Self {
            key: artifact::compatibility_key(&engine()),
        })
    }

    fn compatibility_key(&self) -> String {
        self.key.clone()
    }

    fn precompile(&self, source: &[u8]) -> Result<Vec<u8>, EngineError> {
        // `Module::new` takes wasm text as well as binary (wasmer's `wat` feature), and
        // validates before compiling.
        let engine = engine();
        let module =
            Module::new(&engine, source).map_err(|e| EngineError::Compile(e.to_string()))?;
        let payload = module
            .serialize()
            .map_err(|e| EngineError::Other(format!("serializing module: {e}")))?;
        Ok(payload.to_vec())
    }

    fn load(&self, artifact: Vec<u8>) -> Result<WasmerModule, EngineError> {
        let engine = engine();
        // SAFETY: the cache verified that these are exactly the bytes `precompile` serialized
        // for this module with an engine of this compatibility key (see
        // `wasmpod_runtime::cache::entry`); wasmer still checks its own header, version and the
        // CPU features the code needs.
        let module = unsafe { Module::deserialize(&engine, artifact) }
            .map_err(|e| EngineError::Load(e.to_string()))?;
        Ok(WasmerModule { module, engine })
    }

    fn function_exports(&self, module: &WasmerModule) -> Vec<String> {
        module
            .module
            .exports()
            .filter(|e| matches!(e.ty(), ExternType::Function(_)))
            .map(|e| e.name().to_string())
            .collect()
    }

    fn run(&self, module: &WasmerModule, guest: &GuestContext) -> Result<i32, EngineError> {
        run::run(&module.engine, &module.module, guest)
    }
}
