//! Node-wide cache of compiled modules, keyed by the module's sha256 and the engine's
//! compatibility key. Root-only; entries are written atomically (temp file + rename).
//! Only artifacts this node compiled are ever loaded: the key is derived from the source.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::engine::{EngineError, WasmEngine};

pub const DEFAULT_DIR: &str = "/var/lib/wasmpod/cache";
pub const DIR_ENV: &str = "WASMPOD_CACHE_DIR";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("module cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    /// An entry existed but could not be loaded; it was compiled again.
    Replaced,
}

pub struct ModuleCache {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ModuleCache {
    /// The cache for `engine_name` under `$WASMPOD_CACHE_DIR` (default [`DEFAULT_DIR`]).
    pub fn for_engine(engine_name: &str) -> Self {
        let base = std::env::var_os(DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        Self::new(base.join(engine_name))
    }

    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path<E: WasmEngine>(&self, engine: &E, source: &[u8]) -> PathBuf {
        let module = hex::encode(Sha256::digest(source));
        let compat = hex::encode(Sha256::digest(engine.compatibility_key().as_bytes()));
        self.dir.join(format!("{module}-{}.bin", &compat[..16]))
    }

    /// Returns a loaded module and the artifact path, compiling on a miss.
    pub fn get_or_compile<E: WasmEngine>(
        &self,
        engine: &E,
        source: &[u8],
    ) -> Result<(E::Module, PathBuf, Outcome), CacheError> {
        let path = self.entry_path(engine, source);
        let mut outcome = Outcome::Miss;
        if path.exists() {
            match engine.load(&path) {
                Ok(module) => return Ok((module, path, Outcome::Hit)),
                Err(e) => {
                    tracing::warn!(entry = %path.display(), error = %e, "unloadable cache entry, compiling again");
                    outcome = Outcome::Replaced;
                }
            }
        }
        let artifact = engine.precompile(source)?;
        self.write_atomic(&path, &artifact)?;
        let module = engine.load(&path)?;
        Ok((module, path, outcome))
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(&self.dir))?;
        let tmp = self.dir.join(format!(
            ".tmp-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, path).map_err(io(path))
    }
}
