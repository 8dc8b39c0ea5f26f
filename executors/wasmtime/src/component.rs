//! WASI 0.2 components: telling a command (`wasi:cli/run`) from an HTTP proxy
//! (`wasi:http/incoming-handler`, served by [`crate::http`]), and running a command's
//! `wasi:cli/run` export, like a module's `_start`. Commands may send `wasi:http` requests
//! too (see `crate::outgoing`).

use wasmpod_runtime::{EngineError, GuestContext};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::limits::GuestLimits;
use crate::outgoing::{Hooks, Outgoing};
use crate::{exit_code, other, wasi};

/// The interface a command component exports (any 0.2.x version).
const CLI_RUN: &str = "wasi:cli/run@0.2";
/// The interface an HTTP proxy component (`wasi:http/proxy` world) exports.
const HTTP_HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// What a component is for, told from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Exports `wasi:cli/run`: run once, like a core module's `_start`.
    Command,
    /// Exports `wasi:http/incoming-handler`: served over HTTP, a new instance per request.
    /// Wins over `wasi:cli/run` when a component exports both, as serving is its purpose.
    Proxy,
}

struct GuestState {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    hooks: Hooks,
    table: ResourceTable,
    limits: GuestLimits,
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// The component's [`Kind`], or an error listing its exports when it is neither.
pub fn kind(engine: &Engine, component: &Component) -> Result<Kind, EngineError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if exports.iter().any(|name| name.starts_with(HTTP_HANDLER)) {
        return Ok(Kind::Proxy);
    }
    if exports.iter().any(|name| name.starts_with(CLI_RUN)) {
        return Ok(Kind::Command);
    }
    Err(EngineError::MissingExport {
        func: format!(
            "{CLI_RUN}.x (a command component) or {HTTP_HANDLER}.x (an HTTP proxy component)"
        ),
        available: wasmpod_runtime::engine::export_list(&exports),
    })
}

/// A component's entry is its `wasi:cli/run` or `wasi:http/incoming-handler` export; `#func`
/// selects core module exports only. Logs which of the two the container will do.
pub fn check_entry(
    engine: &Engine,
    component: &Component,
    func: Option<&str>,
) -> Result<(), EngineError> {
    if let Some(func) = func {
        return Err(EngineError::Other(format!(
            "`#{func}`: a component runs its wasi:cli/run export or serves its \
             wasi:http/incoming-handler export; `#func` applies to core modules"
        )));
    }
    match kind(engine, component)? {
        Kind::Command => tracing::info!(
            component = "command",
            "component exports {CLI_RUN}.x: runs it once, like a module's _start"
        ),
        Kind::Proxy => tracing::info!(
            component = "wasi:http proxy",
            "component exports {HTTP_HANDLER}.x: serves HTTP on ${}, a new instance per request",
            crate::http::ADDR_ENV
        ),
    }
    Ok(())
}

pub fn run(
    engine: &Engine,
    component: &Component,
    guest: &GuestContext,
) -> Result<i32, EngineError> {
    let state = GuestState {
        ctx: wasi::builder(guest)?.build(),
        http: WasiHttpCtx::new(),
        hooks: Outgoing::new(engine, component, guest).hooks(),
        table: ResourceTable::new(),
        limits: GuestLimits::new(guest.memory_limit),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    let mut linker: Linker<GuestState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(other("linking WASI 0.2"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
        .map_err(other("linking wasi:http"))?;
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
