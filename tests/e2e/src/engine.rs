//! The wasm engine a run of the suite targets. The same cases run once per engine
//! (`E2E_ENGINE`, see the Makefile's `e2e` target); every name derives from the engine's.

use anyhow::{bail, Result};

/// Engines with a shim binary in this workspace.
pub const ENGINES: &[&str] = &["wasmtime", "wasmer"];
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
    }
}
