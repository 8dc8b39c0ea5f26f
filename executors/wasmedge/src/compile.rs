//! Ahead-of-time compilation with WasmEdge's LLVM compiler, which validates the module first.

use wasmedge_sdk::{wat2wasm, Compiler};
use wasmpod_runtime::EngineError;

use crate::{config, log};

/// The binary header of a component: `\0asm`, then version 0x0d and layer 1.
fn is_component(source: &[u8]) -> bool {
    source.starts_with(b"\0asm") && source.get(6..8) == Some(&[1, 0])
}

/// Compiles wasm binary or text into a universal wasm file (the module and its native code).
pub fn aot(source: &[u8]) -> Result<Vec<u8>, EngineError> {
    if is_component(source) {
        return Err(EngineError::ComponentUnsupported { engine: "wasmedge" });
    }
    let wasm = wat2wasm(source).map_err(|e| EngineError::Compile(e.to_string()))?;
    let config = config::compiler()?;
    let compiler = Compiler::new(Some(&config)).map_err(|e| {
        EngineError::Other(format!(
            "WasmEdge AOT compiler: {e} (libwasmedge must be a build with LLVM, as the release \
             archives are)"
        ))
    })?;
    // The compiler writes only to a file.
    let dir = tempfile::tempdir()
        .map_err(|e| EngineError::Other(format!("temporary directory for the compiler: {e}")))?;
    let (compiled, log) = log::capture(|| compiler.compile_from_bytes(&wasm, "module", dir.path()));
    let path = compiled.map_err(|e| EngineError::Compile(log.describe(&e)))?;
    log.forward();
    std::fs::read(&path).map_err(|e| EngineError::Other(format!("reading {}: {e}", path.display())))
}
