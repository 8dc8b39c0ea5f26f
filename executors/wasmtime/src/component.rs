//! Running a WASI 0.2 command component: its `wasi:cli/run` export, like a module's `_start`.

use wasmpod_runtime::{EngineError, GuestContext};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::limits::GuestLimits;
use crate::{exit_code, other, wasi};

/// The interface a command component exports (any 0.2.x version).
const CLI_RUN: &str = "wasi:cli/run@0.2";

struct GuestState {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: GuestLimits,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// A component's entry is `wasi:cli/run`; `#func` selects core module exports only.
pub fn check_entry(
    engine: &Engine,
    component: &Component,
    func: Option<&str>,
) -> Result<(), EngineError> {
    if let Some(func) = func {
        return Err(EngineError::Other(format!(
            "`#{func}`: a component runs its wasi:cli/run export; `#func` applies to core modules"
        )));
    }
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if exports.iter().any(|name| name.starts_with(CLI_RUN)) {
        return Ok(());
    }
    Err(EngineError::MissingExport {
        func: format!("{CLI_RUN}.x (a command component)"),
        available: if exports.is_empty() {
            "none".into()
        } else {
            exports.join(", ")
        },
    })
}

pub fn run(
    engine: &Engine,
    component: &Component,
    guest: &GuestContext,
) -> Result<i32, EngineError> {
    let state = GuestState {
        ctx: wasi::builder(guest)?.build(),
        table: ResourceTable::new(),
        limits: GuestLimits::new(guest.memory_limit),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    let mut linker: Linker<GuestState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(other("linking WASI 0.2"))?;
    let command = Command::instantiate(&mut store, component, &linker)
        .map_err(other("instantiating component"))?;
    // `run` returns `result<_, _>`: an error without an exit code means exit status 1.
    let result =
        command
            .wasi_cli_run()
            .call_run(&mut store)
            .map(|outcome| if outcome.is_ok() { 0 } else { 1 });
    exit_code(result, store.data().limits.exceeded, guest)
}
