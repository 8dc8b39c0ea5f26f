//! One guest run in the calling process (the container's init): WASI preview1 through
//! wasmer-wasix, stdio on the process's fds, the memory cap, and the exit code.

use std::sync::Arc;

use wasmer::sys::NativeEngineExt;
use wasmer::{Engine, Instance, Module, RuntimeError, Store};
use wasmer_wasix::virtual_fs::{self, host_fs};
use wasmer_wasix::wasmer_wasix_types::wasi::ExitCode;
use wasmer_wasix::{WasiEnv, WasiEnvBuilder, WasiError};
use wasmpod_runtime::grants::GuestDir;
use wasmpod_runtime::{EngineError, GuestContext};

use crate::limits::{CappedTunables, MemoryCap};
use crate::read_only_mounts::ReadOnlyMounts;
use crate::stdio::HostOutput;

fn other(context: &str) -> impl FnOnce(String) -> EngineError + '_ {
    move |e| EngineError::Other(format!("{context}: {e}"))
}

/// Runs the guest and returns its exit code.
///
/// wasmer-wasix needs a tokio runtime: WASI sleeps and file I/O are tasks spawned on it. It is
/// made here, not in `new`/`load`, so that the container's init stays single-threaded until
/// Start. A current-thread runtime does not work: nothing would drive it while the guest runs
/// (the guest's sleep, a task spawned on the runtime, would never end), so it has one worker.
pub fn run(engine: &Engine, module: &Module, guest: &GuestContext) -> Result<i32, EngineError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| other("tokio runtime")(e.to_string()))?;
    let result = {
        let _entered = runtime.enter();
        run_capped(engine, module, guest)
    };
    // A blocking read of stdin may still be in flight: do not wait for it.
    runtime.shutdown_background();
    result
}

fn run_capped(engine: &Engine, module: &Module, guest: &GuestContext) -> Result<i32, EngineError> {
    let mut engine = engine.clone();
    let cap = guest.memory_limit.map(MemoryCap::new);
    if let Some(cap) = &cap {
        // Only this run's clone of the engine; the module was compiled with the same memory
        // styles (the capped tunables delegate them to wasmer's defaults).
        engine.set_tunables(CappedTunables::new(cap.clone()));
    }
    let mut store = Store::new(engine.clone());
    let result = instantiate_and_call(engine, &mut store, module, guest);
    if let (Some(cap), Some(limit)) = (&cap, guest.memory_limit) {
        if let Some(requested) = cap.exceeded() {
            return Err(EngineError::MemoryLimit {
                limit: limit.bytes(),
                requested,
            });
        }
    }
    result
}

fn instantiate_and_call(
    engine: Engine,
    store: &mut Store,
    module: &Module,
    guest: &GuestContext,
) -> Result<i32, EngineError> {
    let builder = wasi_env(engine, guest)?;
    let (instance, env) = builder
        .instantiate(module.clone(), store)
        .map_err(|e| other("instantiating module")(e.to_string()))?;
    let result = call(&instance, store, guest.func.as_deref().unwrap_or("_start"));
    // Closes and flushes the guest's files (wasmer writes host files in the background).
    let code = match &result {
        Ok(code) => *code,
        Err(_) => 1,
    };
    env.on_exit(store, Some(ExitCode::from(code)));
    result
}

fn call(instance: &Instance, store: &mut Store, name: &str) -> Result<i32, EngineError> {
    let func = instance
        .exports
        .get_typed_function::<(), ()>(store, name)
        .map_err(|e| other(name)(e.to_string()))?;
    match func.call(store) {
        Ok(()) => Ok(0),
        Err(e) => exit_code(&e).map_err(|_| EngineError::Trap(describe(&e))),
    }
}

/// The code of `proc_exit`, which wasmer reports as an error carrying it.
fn exit_code(error: &RuntimeError) -> Result<i32, ()> {
    match error.downcast_ref::<WasiError>() {
        Some(WasiError::Exit(code)) => Ok(code.raw()),
        _ => Err(()),
    }
}

/// The trap and its wasm backtrace, like wasmtime's report.
fn describe(error: &RuntimeError) -> String {
    let text = error.to_string();
    text.strip_prefix("RuntimeError: ")
        .unwrap_or(&text)
        .to_string()
}

fn wasi_env(engine: Engine, guest: &GuestContext) -> Result<WasiEnvBuilder, EngineError> {
    let argv0 = guest.args.first().cloned().unwrap_or_default();
    let mut builder = WasiEnv::builder(argv0)
        .args(guest.args.iter().skip(1))
        .engine(engine);
    for kv in &guest.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        builder.add_env(k, v);
    }
    // The container's root is the process's root: WASI paths are host paths here.
    let root = host_fs::FileSystem::new(tokio::runtime::Handle::current(), "/")
        .map_err(|e| other("opening /")(e.to_string()))?;
    builder.set_fs(Arc::new(ReadOnlyMounts(root)) as Arc<dyn virtual_fs::FileSystem + Send + Sync>);
    for dir in guest.dirs() {
        preopen(&mut builder, &dir)?;
    }
    builder.set_stdin(Box::new(host_fs::Stdin::default()));
    builder.set_stdout(HostOutput::stdout());
    builder.set_stderr(HostOutput::stderr());
    Ok(builder)
}

/// Preopens `dir` under its guest path (`.` for the working directory). A read-only one is
/// also a read-only mount (see `wasmpod_runtime::grants`).
fn preopen(builder: &mut WasiEnvBuilder, dir: &GuestDir) -> Result<(), EngineError> {
    builder
        .add_preopen_build(|p| {
            p.directory(&dir.path)
                .read(true)
                .write(dir.writable)
                .create(dir.writable);
            if dir.guest_path != dir.path.to_string_lossy() {
                p.alias(&dir.guest_path);
            }
            p
        })
        .map_err(|e| other(&format!("preopen {}", dir.path.display()))(e.to_string()))
}
