//! The guest's WASI args, env and preopens in the form libwasmedge's built-in WASI takes them:
//! C strings, env as `KEY=VALUE`, preopens as `GUEST_PATH:HOST_PATH`.

use wasmpod_runtime::{EngineError, GuestContext};

#[derive(Debug, PartialEq, Eq)]
pub struct WasiArgs {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub preopens: Vec<String>,
}

impl WasiArgs {
    /// The preopens of [`GuestContext::dirs`] (`/` as `/`, and the cwd as `.` so relative
    /// paths resolve against it, unless `wasmpod.io/preopens` says otherwise). Checked here because the SDK panics on a NUL byte, and a `:` in the
    /// cwd would be read as the separator.
    pub fn new(guest: &GuestContext) -> Result<Self, EngineError> {
        for arg in &guest.args {
            no_nul("argument", arg)?;
        }
        let env = guest
            .env
            .iter()
            .map(|kv| {
                no_nul("environment variable", kv)?;
                // libwasmedge passes entries through as they are; a bare `KEY` means empty.
                Ok(if kv.contains('=') {
                    kv.clone()
                } else {
                    format!("{kv}=")
                })
            })
            .collect::<Result<_, EngineError>>()?;
        let mut preopens = Vec::new();
        for dir in guest.dirs() {
            let path = dir.path.to_str().ok_or_else(|| {
                EngineError::Other(format!("preopen {} is not UTF-8", dir.path.display()))
            })?;
            no_nul("preopen", path)?;
            if path.contains(':') {
                return Err(EngineError::Other(format!(
                    "preopen {path:?} contains `:`, which WasmEdge cannot preopen"
                )));
            }
            // Read-only preopens are read-only mounts (see `wasmpod_runtime::grants`).
            preopens.push(format!("{}:{path}", dir.guest_path));
        }
        Ok(Self {
            args: guest.args.clone(),
            env,
            preopens,
        })
    }
}

fn no_nul(what: &str, value: &str) -> Result<(), EngineError> {
    if value.contains('\0') {
        return Err(EngineError::Other(format!(
            "{what} {value:?} contains a NUL byte"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(cwd: &str) -> GuestContext {
        GuestContext {
            args: vec!["/app/m.wasm".into(), "two words".into()],
            env: vec!["A=1=x".into(), "EMPTY".into(), "B=".into()],
            cwd: cwd.into(),
            func: None,
            memory_limit: None,
            grants: Default::default(),
        }
    }

    #[test]
    fn args_env_and_preopens() {
        let wasi = WasiArgs::new(&guest("/srv/app")).unwrap();
        assert_eq!(
            wasi,
            WasiArgs {
                args: vec!["/app/m.wasm".into(), "two words".into()],
                env: vec!["A=1=x".into(), "EMPTY=".into(), "B=".into()],
                preopens: vec!["/:/".into(), ".:/srv/app".into()],
            }
        );
        assert_eq!(WasiArgs::new(&guest("/")).unwrap().preopens, ["/:/"]);
    }

    #[test]
    fn what_libwasmedge_cannot_take_is_an_error_naming_it() {
        let mut bad = guest("/");
        bad.args.push("a\0b".into());
        let err = WasiArgs::new(&bad).unwrap_err().to_string();
        assert!(err.contains("argument") && err.contains("NUL"), "{err}");

        let mut bad = guest("/");
        bad.env.push("K=v\0".into());
        let err = WasiArgs::new(&bad).unwrap_err().to_string();
        assert!(err.contains("environment variable"), "{err}");

        let err = WasiArgs::new(&guest("/data:1")).unwrap_err().to_string();
        assert!(err.contains("/data:1") && err.contains("`:`"), "{err}");
    }
}
