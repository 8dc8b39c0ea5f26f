//! The shim binaries: found in a build directory or an unpacked release tarball, copied to
//! the node's bin directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::handler::{shim_binary, Handler};

pub const DEFAULT_BIN_DIR: &str = "/usr/local/bin";

/// A shim to copy: from `source` to `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub source: PathBuf,
    pub dest: PathBuf,
}

/// One copy per engine of `handlers`; fails naming the first binary missing from `shim_dir`.
pub fn plan(handlers: &[Handler], shim_dir: &Path, bin_dir: &Path) -> Result<Vec<Copy>> {
    let engines: BTreeSet<&str> = handlers.iter().map(|h| h.engine.as_str()).collect();
    engines
        .into_iter()
        .map(|engine| {
            let name = shim_binary(engine);
            let source = shim_dir.join(&name);
            if !source.is_file() {
                return Err(Error::MissingBinary { path: source });
            }
            Ok(Copy {
                source,
                dest: bin_dir.join(name),
            })
        })
        .collect()
}

/// The bytes of `copy.source`.
pub fn read_source(copy: &Copy) -> Result<Vec<u8>> {
    std::fs::read(&copy.source).map_err(Error::io(&copy.source))
}

/// Where wasmpod-node's own binary is: the default `--shim-dir`, so that `wasmpod-node install`
/// run from an unpacked release tarball finds the shims beside it.
pub fn own_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}
