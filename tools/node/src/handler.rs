//! A CRI runtime handler wasmpod-node registers: its name and the wasmpod engine behind it.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The handlers installed when none are named.
pub const DEFAULT_HANDLERS: &[&str] = &["wasmtime", "wasmer"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// The name pods select (RuntimeClass `handler`), a key under `containerd.runtimes`.
    pub name: String,
    /// The wasmpod engine: `io.containerd.<engine>.v1`, binary `containerd-shim-<engine>-v1`.
    pub engine: String,
}

impl Handler {
    pub fn runtime_type(&self) -> String {
        format!("io.containerd.{}.v1", self.engine)
    }

    pub fn shim_binary(&self) -> String {
        shim_binary(&self.engine)
    }

    /// The default handlers, each named after its engine.
    pub fn defaults() -> Vec<Handler> {
        DEFAULT_HANDLERS
            .iter()
            .map(|name| Handler {
                name: name.to_string(),
                engine: name.to_string(),
            })
            .collect()
    }
}

pub fn shim_binary(engine: &str) -> String {
    format!("containerd-shim-{engine}-v1")
}

impl FromStr for Handler {
    type Err = Error;

    /// `NAME` (engine of the same name) or `NAME=ENGINE`.
    fn from_str(text: &str) -> Result<Self, Error> {
        let (name, engine) = text.split_once('=').unwrap_or((text, text));
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        // The engine becomes part of a runtime type and a file name.
        let engine_ok = !engine.is_empty()
            && engine
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !name_ok || !engine_ok {
            return Err(Error::BadHandler(text.to_string()));
        }
        Ok(Handler {
            name: name.to_string(),
            engine: engine.to_string(),
        })
    }
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.engine {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}={}", self.name, self.engine)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_engines_parse() {
        let plain: Handler = "wasmtime".parse().unwrap();
        assert_eq!(plain.runtime_type(), "io.containerd.wasmtime.v1");
        assert_eq!(plain.shim_binary(), "containerd-shim-wasmtime-v1");
        let renamed: Handler = "fast-wasm=wasmer".parse().unwrap();
        assert_eq!(renamed.name, "fast-wasm");
        assert_eq!(renamed.runtime_type(), "io.containerd.wasmer.v1");
        assert_eq!(renamed.to_string(), "fast-wasm=wasmer");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "=wasmtime", "a=", "a b", "x=Wasm", "x=../bin", "w.x"] {
            assert!(bad.parse::<Handler>().is_err(), "{bad:?} accepted");
        }
    }
}
