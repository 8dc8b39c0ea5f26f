//! wasmtime adapter: WASI preview1 core modules, compiled ahead of time by the shim and loaded
//! from the node's module cache in the container's init process.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

mod limits;

use limits::GuestLimits;
use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};
use wasmtime::{Config, Engine, ExternType, Linker, Module, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// What a guest's store holds: its WASI context and its resource limits.
struct GuestState {
    wasi: WasiP1Ctx,
    limits: GuestLimits,
}

#[derive(Clone)]
pub struct Wasmtime {
    engine: Engine,
}

fn other(context: &str) -> impl FnOnce(wasmtime::Error) -> EngineError + '_ {
    move |e| EngineError::Other(format!("{context}: {e:#}"))
}

impl WasmEngine for Wasmtime {
    const NAME: &'static str = "wasmtime";
    type Module = Module;

    fn new() -> Result<Self, EngineError> {
        let config = Config::new();
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
        self.engine
            .precompile_module(source)
            .map_err(|e| EngineError::Compile(format!("{e:#}")))
    }

    fn load(&self, artifact: &Path) -> Result<Module, EngineError> {
        // SAFETY: artifacts come only from the root-only node cache, written by
        // `precompile` with an engine of the same compatibility key.
        unsafe { Module::deserialize_file(&self.engine, artifact) }.map_err(|e| EngineError::Load {
            path: artifact.to_path_buf(),
            reason: format!("{e:#}"),
        })
    }

    fn function_exports(&self, module: &Module) -> Vec<String> {
        module
            .exports()
            .filter(|e| matches!(e.ty(), ExternType::Func(_)))
            .map(|e| e.name().to_string())
            .collect()
    }

    fn run(&self, module: &Module, guest: &GuestContext) -> Result<i32, EngineError> {
        let mut builder = WasiCtxBuilder::new();
        builder.args(&guest.args).inherit_stdio();
        for kv in &guest.env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            builder.env(k, v);
        }
        builder
            .preopened_dir("/", "/", FsPerms::ReadWrite)
            .map_err(other("preopen /"))?;
        if guest.cwd != Path::new("/") {
            builder
                .preopened_dir(&guest.cwd, ".", FsPerms::ReadWrite)
                .map_err(other("preopen the working directory"))?;
        }
        let state = GuestState {
            wasi: builder.build_p1(),
            limits: GuestLimits::new(guest.memory_limit),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let mut linker: Linker<GuestState> = Linker::new(&self.engine);
        p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi).map_err(other("linking WASI"))?;
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(other("instantiating module"))?;
        let name = guest.func.as_deref().unwrap_or("_start");
        let func = instance
            .get_typed_func::<(), ()>(&mut store, name)
            .map_err(other(name))?;
        let result = func.call(&mut store, ());
        if let (Some(requested), Some(limit)) = (store.data().limits.exceeded, guest.memory_limit) {
            return Err(EngineError::MemoryLimit {
                limit,
                requested: requested as u64,
            });
        }
        match result {
            Ok(()) => Ok(0),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(EngineError::Trap(format!("{e:?}"))),
            },
        }
    }
}
