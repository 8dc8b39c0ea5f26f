//! [`WasmEngine`] for WasmEdge.

use wasmedge_sdk::{ExternalInstanceType, Module};
use wasmedge_sys::utils;
use wasmpod_runtime::engine::check_function_export;
use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};

use crate::{artifact, compile, config, log, run};

/// The libwasmedge minor version wasmedge-sys 0.21 binds (its C API changes between minors).
const LIBRARY_MINOR: (u32, u32) = (0, 17);

/// The engine adapter. libwasmedge has no engine object to share: configurations, loaders and
/// executors are made per call, so this holds only the compatibility key.
#[derive(Clone)]
pub struct WasmEdge {
    /// Cached: asked for on every cache lookup.
    key: String,
}

/// A loaded module: WasmEdge's validated module with the native code of its AOT section.
#[derive(Clone)]
pub struct WasmEdgeModule {
    module: Module,
}

fn library_version() -> Result<String, EngineError> {
    let loaded = (utils::version_major_value(), utils::version_minor_value());
    let version = utils::version_string();
    if loaded != LIBRARY_MINOR {
        return Err(EngineError::Other(format!(
            "libwasmedge {version} is loaded, but this shim was built for WasmEdge {}.{}.x",
            LIBRARY_MINOR.0, LIBRARY_MINOR.1
        )));
    }
    Ok(version)
}

impl WasmEngine for WasmEdge {
    const NAME: &'static str = "wasmedge";
    type Module = WasmEdgeModule;

    fn new() -> Result<Self, EngineError> {
        log::install();
        let key = artifact::compatibility_key(
            &library_version()?,
            config::COMPILER_SETTINGS,
            &artifact::cpu_features(),
        );
        Ok(Self { key })
    }

    fn compatibility_key(&self) -> String {
        self.key.clone()
    }

    fn precompile(&self, source: &[u8]) -> Result<Vec<u8>, EngineError> {
        compile::aot(source)
    }

    fn load(&self, artifact: Vec<u8>) -> Result<WasmEdgeModule, EngineError> {
        let config = config::runtime(None)?;
        // Parses and validates the module, and maps the native code the cache verified (the
        // entry binds these bytes to this module and this compatibility key).
        let (module, log) = log::capture(|| Module::from_bytes(Some(&config), &artifact));
        let module = module.map_err(|e| EngineError::Load(log.describe(&e)))?;
        log.forward();
        Ok(WasmEdgeModule { module })
    }

    fn function_exports(&self, module: &WasmEdgeModule) -> Vec<String> {
        module
            .module
            .exports()
            .iter()
            .filter(|e| matches!(e.ty(), Ok(ExternalInstanceType::Func(_))))
            .map(|e| e.name().into_owned())
            .collect()
    }

    /// Also checks the signature: an entry takes and returns nothing, as `_start` does.
    fn check_entry(&self, module: &WasmEdgeModule, func: Option<&str>) -> Result<(), EngineError> {
        check_function_export(self.function_exports(module), func)?;
        let name = func.unwrap_or("_start");
        match module.module.get_export(name) {
            Some(ExternalInstanceType::Func(ty)) if ty.args_len() == 0 && ty.returns_len() == 0 => {
                Ok(())
            }
            _ => Err(EngineError::Other(format!(
                "export `{name}` must take no parameters and return nothing to be an entry"
            ))),
        }
    }

    fn run(&self, module: &WasmEdgeModule, guest: &GuestContext) -> Result<i32, EngineError> {
        run::run(&module.module, guest)
    }
}
