//! wasmer adapter (runtime `io.containerd.wasmer.v1`): WASI preview1 core modules through
//! wasmer-wasix, compiled ahead of time with Cranelift by the shim and loaded from the node's
//! module cache in the container's init process.
//!
//! - `artifact`: the cache file format and the compatibility key.
//! - `limits`: the container memory limit as a cap on linear memory.
//! - `stdio`: the guest's stdout/stderr on the process's fds.
//! - `run`: one guest run.
//!
//! `new` and `load` start no thread (the zygote worker forks right after them); `run` starts
//! a tokio runtime with one worker, inside the container.

mod artifact;
mod limits;
mod run;
mod stdio;

use std::path::Path;

use wasmer::sys::{Cranelift, EngineBuilder};
use wasmer::{Engine, ExternType, Module};
use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};

#[derive(Clone)]
pub struct Wasmer {
    engine: Engine,
    /// Cached: [`artifact::compatibility_key`] is asked for on every cache lookup.
    key: String,
}

impl WasmEngine for Wasmer {
    const NAME: &'static str = "wasmer";
    type Module = Module;

    fn new() -> Result<Self, EngineError> {
        let engine: Engine = EngineBuilder::new(Cranelift::new()).engine().into();
        let key = artifact::compatibility_key(&engine);
        Ok(Self { engine, key })
    }

    fn compatibility_key(&self) -> String {
        self.key.clone()
    }

    fn precompile(&self, source: &[u8]) -> Result<Vec<u8>, EngineError> {
        // `Module::new` takes wasm text as well as binary (wasmer's `wat` feature), and
        // validates before compiling.
        let module =
            Module::new(&self.engine, source).map_err(|e| EngineError::Compile(e.to_string()))?;
        let payload = module
            .serialize()
            .map_err(|e| EngineError::Other(format!("serializing module: {e}")))?;
        Ok(artifact::seal(&self.key, &payload))
    }

    fn load(&self, path: &Path) -> Result<Module, EngineError> {
        let payload = artifact::open(&self.key, path)?;
        // SAFETY: `open` verified that these are exactly the bytes `precompile` serialized with
        // an engine of this compatibility key (digest over key and payload); wasmer still checks
        // its own header, version and the CPU features the code needs.
        unsafe { Module::deserialize(&self.engine, payload) }.map_err(|e| EngineError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    fn function_exports(&self, module: &Module) -> Vec<String> {
        module
            .exports()
            .filter(|e| matches!(e.ty(), ExternType::Function(_)))
            .map(|e| e.name().to_string())
            .collect()
    }

    fn run(&self, module: &Module, guest: &GuestContext) -> Result<i32, EngineError> {
        run::run(&self.engine, module, guest)
    }
}
