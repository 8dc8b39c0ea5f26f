//! libwasmedge configurations: one for the AOT compiler, one for loading and running.
//!
//! Both enable the same proposals (WasmEdge 0.17's defaults, the WebAssembly 3.0 set), so code
//! compiled by the one is valid for the other. Since 0.17 libwasmedge only uses the native code
//! of a universal wasm file in AOT run mode; in any other mode it would interpret the module.

use wasmedge_sdk::config::{
    CommonConfigOptions, CompilerConfigOptions, Config, ConfigBuilder, RuntimeConfigOptions,
};
use wasmedge_sdk::{CompilerOptimizationLevel, CompilerOutputFormat, RunMode};
use wasmpod_runtime::EngineError;

/// The compiler settings, as they enter the compatibility key: universal wasm output (loadable
/// from a buffer, see `artifact`), O2, code for this host's CPU (not a generic binary).
pub const COMPILER_SETTINGS: &str = "universal-wasm|O2|host-cpu";

fn common() -> CommonConfigOptions {
    CommonConfigOptions::default().run_mode(RunMode::Aot)
}

fn build(builder: ConfigBuilder) -> Result<Config, EngineError> {
    builder
        .build()
        .map_err(|e| EngineError::Other(format!("WasmEdge configuration: {e}")))
}

pub fn compiler() -> Result<Config, EngineError> {
    let options = CompilerConfigOptions::new()
        .out_format(CompilerOutputFormat::Wasm)
        .optimization_level(CompilerOptimizationLevel::O2)
        .generic_binary(false);
    build(ConfigBuilder::new(common()).with_compiler_config(options))
}

/// For loading modules, and for running them with at most `max_pages` pages per memory.
pub fn runtime(max_pages: Option<u32>) -> Result<Config, EngineError> {
    let mut builder = ConfigBuilder::new(common());
    if let Some(pages) = max_pages {
        builder = builder.with_runtime_config(RuntimeConfigOptions::new().max_memory_pages(pages));
    }
    build(builder)
}
