//! Running a WASI preview1 core module: `_start`, or the export chosen with `module.wasm#func`.

use wasmpod_runtime::{EngineError, GuestContext};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};

use crate::limits::GuestLimits;
use crate::{exit_code, other, wasi};

struct GuestState {
    wasi: WasiP1Ctx,
    limits: GuestLimits,
}

pub fn run(engine: &Engine, module: &Module, guest: &GuestContext) -> Result<i32, EngineError> {
    let state = GuestState {
        wasi: wasi::builder(guest)?.build_p1(),
        limits: GuestLimits::new(guest.memory_limit),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    let mut linker: Linker<GuestState> = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi).map_err(other("linking WASI"))?;
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
