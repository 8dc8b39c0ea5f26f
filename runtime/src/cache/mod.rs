//! Node-wide cache of compiled modules, keyed by the module's sha256 and the engine's
//! compatibility key. Root-only; entries are written atomically (temp file + rename).
//! Only artifacts this node compiled are ever loaded: the key is derived from the source.
//!
//! The cache is bounded: after each new entry is written, least-recently-used entries are
//! evicted until the entries fit in the limit (see [`evict`]). A hit refreshes the entry's
//! mtime, so the mtime is the last use. Several shims share one directory; every step
//! tolerates files that another process has just removed.

pub mod envelope;
mod evict;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::engine::{EngineError, WasmEngine};

pub use evict::{IN_USE_GRACE, STALE_TMP_AGE};

pub const DEFAULT_DIR: &str = "/var/lib/wasmpod/cache";
pub const DIR_ENV: &str = "WASMPOD_CACHE_DIR";
/// Size limit of the entries (`*.bin`) of one engine's cache, in bytes.
pub const MAX_BYTES_ENV: &str = "WASMPOD_CACHE_MAX_BYTES";
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

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
    max_bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ModuleCache {
    /// The cache for `engine_name` under `$WASMPOD_CACHE_DIR` (default [`DEFAULT_DIR`]),
    /// limited to `$WASMPOD_CACHE_MAX_BYTES` (default [`DEFAULT_MAX_BYTES`]).
    pub fn for_engine(engine_name: &str) -> Self {
        let base = std::env::var_os(DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        Self::with_limit(base.join(engine_name), max_bytes_from_env())
    }

    /// A cache in `dir` with the default size limit.
    pub fn new(dir: PathBuf) -> Self {
        Self::with_limit(dir, DEFAULT_MAX_BYTES)
    }

    /// A cache in `dir` whose entries are evicted beyond `max_bytes` in total.
    pub fn with_limit(dir: PathBuf, max_bytes: u64) -> Self {
        Self { dir, max_bytes }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn entry_path<E: WasmEngine>(&self, engine: &E, source: &[u8]) -> PathBuf {
        let module = hex::encode(Sha256::digest(source));
        let compat = hex::encode(Sha256::digest(engine.compatibility_key().as_bytes()));
        self.dir.join(format!("{module}-{}.bin", &compat[..16]))
    }

    /// Returns a loaded module and the artifact path, compiling on a miss. A new entry is
    /// kept even when it alone exceeds the limit; evicting others never fails the call.
    pub fn get_or_compile<E: WasmEngine>(
        &self,
        engine: &E,
        source: &[u8],
    ) -> Result<(E::Module, PathBuf, Outcome), CacheError> {
        let path = self.entry_path(engine, source);
        let mut outcome = Outcome::Miss;
        if path.exists() {
            match engine.load(&path) {
                Ok(module) => {
                    touch(&path);
                    return Ok((module, path, Outcome::Hit));
                }
                // Evicted by another shim between the check and the load: a plain miss.
                Err(_) if !path.exists() => {}
                Err(e) => {
                    tracing::warn!(entry = %path.display(), error = %e, "unloadable cache entry, compiling again");
                    outcome = Outcome::Replaced;
                }
            }
        }
        let artifact = engine.precompile(source)?;
        self.write_atomic(&path, &artifact)?;
        let module = engine.load(&path)?;
        evict::evict(&self.dir, self.max_bytes, &path);
        Ok((module, path, outcome))
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(&self.dir))?;
        let tmp = self.dir.join(format!(
            "{}{}-{:?}",
            evict::TMP_PREFIX,
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

/// Marks a hit entry as just used (its mtime is its LRU position). Failing only costs
/// recency, so it is logged, not returned.
fn touch(path: &Path) {
    let result = fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
    match result {
        Ok(()) => {}
        // Evicted by another shim after we loaded it; the loaded module stays valid.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(entry = %path.display(), error = %e, "cannot mark cache entry as used")
        }
    }
}

fn max_bytes_from_env() -> u64 {
    let Some(raw) = std::env::var_os(MAX_BYTES_ENV) else {
        return DEFAULT_MAX_BYTES;
    };
    match raw.to_str().map(str::trim).map(str::parse::<u64>) {
        Some(Ok(bytes)) => bytes,
        _ => {
            tracing::warn!(
                value = ?raw,
                default = DEFAULT_MAX_BYTES,
                "{MAX_BYTES_ENV} is not a number of bytes, using the default"
            );
            DEFAULT_MAX_BYTES
        }
    }
}
