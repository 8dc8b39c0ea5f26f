//! One guest run in the calling process (the container's init): libwasmedge's WASI preview1 on
//! the process's own stdio fds, the memory cap, and the exit code.

use std::collections::HashMap;

use wasmedge_sdk::error::{CoreCommonError, CoreError, WasmEdgeError};
use wasmedge_sdk::wasi::WasiModule;
use wasmedge_sdk::{params, ExternalInstanceType, Instance, Module, Store, Vm};
use wasmpod_runtime::{EngineError, GuestContext};

use crate::guest::WasiArgs;
use crate::{config, log, memory};

/// How the guest's entry ended, before the memory cap is taken into account.
enum Ended {
    /// Returned, or called `proc_exit` with this code.
    Exit(i32),
    Trap(Box<WasmEdgeError>),
}

pub fn run(module: &Module, guest: &GuestContext) -> Result<i32, EngineError> {
    let wasi = WasiArgs::new(guest)?;
    // Fixed for the run: WasmEdge takes its page limit once (LIVE_MEMORY_LIMIT is false).
    let memory_limit = guest.memory_limit.map(|l| l.bytes());
    if let Some(limit) = memory_limit {
        for min_pages in exported_memory_sizes(module) {
            memory::check_initial(limit, min_pages)?;
        }
    }
    let config = config::runtime(memory_limit.map(memory::page_limit))?;
    let entry = guest.func.as_deref().unwrap_or("_start");
    let (ended, log) = log::capture(|| call(&config, module, &wasi, entry));
    if let Some(limit) = memory::exceeded(memory_limit, log.limit_refused) {
        return Err(limit);
    }
    match ended? {
        Ended::Exit(code) => Ok(code),
        Ended::Trap(e) => Err(EngineError::Trap(log.describe(&e))),
    }
}

/// Initial sizes, in pages, of the memories the module exports.
fn exported_memory_sizes(module: &Module) -> Vec<u32> {
    module
        .exports()
        .iter()
        .filter_map(|e| match e.ty() {
            Ok(ExternalInstanceType::Memory(ty)) => Some(ty.minimum()),
            _ => None,
        })
        .collect()
}

fn strs(strings: &[String]) -> Vec<&str> {
    strings.iter().map(String::as_str).collect()
}

fn other(context: &'static str) -> impl FnOnce(Box<WasmEdgeError>) -> EngineError {
    move |e| EngineError::Other(format!("{context}: {e}"))
}

fn call(
    config: &wasmedge_sdk::config::Config,
    module: &Module,
    wasi_args: &WasiArgs,
    entry: &str,
) -> Result<Ended, EngineError> {
    let mut wasi = WasiModule::create(
        Some(strs(&wasi_args.args)),
        Some(strs(&wasi_args.env)),
        Some(strs(&wasi_args.preopens)),
    )
    .map_err(other("creating the WASI module"))?;
    let result = {
        let mut instances: HashMap<String, &mut Instance> = HashMap::new();
        instances.insert(wasi.name().to_string(), wasi.as_mut());
        let store = Store::new(Some(config), instances).map_err(other("creating the store"))?;
        let mut vm = Vm::new(store);
        vm.register_module(None, module.clone())
            .map_err(other("instantiating module"))?;
        vm.run_func(None, entry, params!())
    };
    match result {
        Ok(_) => Ok(Ended::Exit(0)),
        Err(e)
            if matches!(
                *e,
                WasmEdgeError::Core(CoreError::Common(CoreCommonError::Terminated))
            ) =>
        {
            // WASI exit codes are u32; a shell sees them modulo 256 anyway.
            Ok(Ended::Exit(wasi.exit_code() as i32))
        }
        Err(e) => Ok(Ended::Trap(e)),
    }
}
