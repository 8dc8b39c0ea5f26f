//! Running a WASI preview1 core module: `_start`, or the export chosen with `module.wasm#func`.

use wasmpod_runtime::{EngineError, GuestContext};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};

use crate::limits::GuestLimits;
use crate::{exit_code, other, wasi};

/// The store data of a running core module: its WASI preview1 context and memory cap. Opaque;
/// it is the `T` of the [`Linker<T>`] that [`crate::HostFunctions`] add to.
pub struct CoreState {
    wasi: WasiP1Ctx,
    limits: GuestLimits,
}

/// Adds functions to a module's linker after WASI preview1.
pub(crate) type AddFunctions = fn(&mut Linker<CoreState>) -> wasmtime::Result<()>;

/// Adds nothing: the plain engine's core modules get WASI preview1 only.
pub(crate) fn wasi_only(_: &mut Linker<CoreState>) -> wasmtime::Result<()> {
    Ok(())
}

pub(crate) fn run(
    engine: &Engine,
    module: &Module,
    guest: &GuestContext,
    add_functions: AddFunctions,
) -> Result<i32, EngineError> {
    let state = CoreState {
        wasi: wasi::builder(guest)?.build_p1(),
        limits: GuestLimits::new(guest.memory_limit),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    let mut linker: Linker<CoreState> = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi).map_err(other("linking WASI"))?;
    add_functions(&mut linker).map_err(other("adding host functions"))?;
    let instance = linker
        .instantiate(&mut store, module)
        .map_err(other("instantiating module"))?;
    let name = guest.func.as_deref().unwrap_or("_start");
    let func = instance
        .get_typed_func::<(), ()>(&mut store, name)
        .map_err(other(name))?;
    let result = func.call(&mut store, ());
    exit_code(result.map(|()| 0), store.data().limits.exceeded, guest)
}
