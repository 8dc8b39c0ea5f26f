//! The wasm engine a run of the suite targets. The same cases run once per engine
//! (`E2E_ENGINE`, see the Makefile's `e2e` target); every name derives from the engine's.

use std::path::Path;

use anyhow::{bail, Result};

use crate::paths;

/// Engines with a shim binary in this workspace.
pub const ENGINES: &[&str] = &["wasmtime", "wasmer", "wasmedge"];
/// Engines whose shim is built only on request (a cargo feature and a library that few machines
/// have: see the README's WasmEdge section). The Makefile runs the suite on them only when it
/// built their shim.
pub const OPTIONAL_ENGINES: &[&str] = &["wasmedge"];
/// The engine when `E2E_ENGINE` is unset.
pub const DEFAULT_ENGINE: &str = "wasmtime";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    name: String,
}

impl Engine {
    pub fn new(name: &str) -> Result<Self> {
        if !ENGINES.contains(&name) {
            bail!("unknown engine {name:?} (known: {})", ENGINES.join(", "));
        }
        Ok(Engine {
            name: name.to_string(),
        })
    }

    /// `$E2E_ENGINE`, else [`DEFAULT_ENGINE`].
    pub fn from_env() -> Result<Self> {
        match std::env::var("E2E_ENGINE") {
            Ok(name) if !name.is_empty() => Self::new(&name),
            _ => Self::new(DEFAULT_ENGINE),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a running wasm guest's memory cap follows an updated memory limit (the
    /// adapter's `WasmEngine::LIVE_MEMORY_LIMIT`): WasmEdge fixes it at start.
    pub fn live_memory_limit(&self) -> bool {
        self.name != "wasmedge"
    }

    /// containerd's runtime name, `io.containerd.<engine>.v1`.
    pub fn runtime(&self) -> String {
        format!("io.containerd.{}.v1", self.name)
    }

    /// The binary containerd starts for [`Engine::runtime`].
    pub fn shim_binary(&self) -> String {
        format!("containerd-shim-{}-v1", self.name)
    }

    /// The CRI runtime handler the private containerd registers for this engine.
    pub fn cri_handler(&self) -> &str {
        &self.name
    }
}

/// The engines whose shim `shim_dir` holds: all of [`ENGINES`] but the optional ones not built.
pub fn built_engines(shim_dir: &Path) -> Vec<&'static str> {
    ENGINES
        .iter()
        .copied()
        .filter(|name| {
            !OPTIONAL_ENGINES.contains(name)
                || paths::is_executable(&shim_dir.join(format!("containerd-shim-{name}-v1")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_engine() {
        let e = Engine::new("wasmer").unwrap();
        assert_eq!(e.runtime(), "io.containerd.wasmer.v1");
        assert_eq!(e.shim_binary(), "containerd-shim-wasmer-v1");
        assert_eq!(e.cri_handler(), "wasmer");
        assert!(Engine::new("v8").is_err());
        assert_eq!(
            Engine::new("wasmedge").unwrap().runtime(),
            "io.containerd.wasmedge.v1"
        );
    }

    #[test]
    fn optional_engines_count_only_once_built() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(built_engines(dir.path()), ["wasmtime", "wasmer"]);
        let shim = dir.path().join("containerd-shim-wasmedge-v1");
        std::fs::write(&shim, "").unwrap();
        std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert_eq!(
            built_engines(dir.path()),
            ["wasmtime", "wasmer", "wasmedge"]
        );
    }
}
