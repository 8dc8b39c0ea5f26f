//! Node-wide cache of compiled modules, keyed by the module's sha256 and the engine's
//! compatibility key, and bound to that key inside each entry ([`entry`]).
//!
//! Root-only: the directory and its parents must be owned by root and writable by nobody else
//! (a root-owned sticky parent such as `/tmp` is allowed), or this shim does not use the cache
//! at all: it logs one error and compiles each module for the one container that needs it
//! (into a private directory, removed after use). Entries are written to a temp file created
//! `O_EXCL | O_NOFOLLOW | O_CLOEXEC` and renamed into place; they are opened `O_NOFOLLOW`.
//!
//! The cache is bounded: after each new entry is written, least-recently-used entries are
//! evicted until the entries fit in the limit (`evict.rs`). A hit refreshes the entry's
//! mtime, so the mtime is the last use. Several shims share one directory; every step
//! tolerates files that another process has just removed.

pub mod entry;
mod evict;
mod inflight;
mod secure_dir;

use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::engine::{EngineError, WasmEngine};
pub use entry::{EntryError, EntryKey};
pub use evict::{IN_USE_GRACE, STALE_TMP_AGE};
pub use inflight::CompileLock;

/// The cache's base directory unless [`DIR_ENV`] says otherwise; one folder per engine below.
pub const DEFAULT_DIR: &str = "/var/lib/wasmpod/cache";
/// Environment variable of the shim: the cache's base directory.
pub const DIR_ENV: &str = "WASMPOD_CACHE_DIR";
/// Size limit of the entries (`*.bin`) of one engine's cache, in bytes.
pub const MAX_BYTES_ENV: &str = "WASMPOD_CACHE_MAX_BYTES";
/// Default of [`MAX_BYTES_ENV`]: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Where a shim whose cache directory is unsafe compiles for single containers.
pub const PRIVATE_DIR: &str = "/run/wasmpod/private-artifacts";

/// A cache operation that failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages show
pub enum CacheError {
    /// A file or directory of the cache.
    #[error("module cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An entry that is not its key's (see [`EntryError`]).
    #[error("module cache entry {path}: {source}")]
    Entry { path: PathBuf, source: EntryError },
    /// The engine could not load an entry.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// How a module was found, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its entry was in the cache.
    Hit,
    /// It was compiled and its entry written.
    Miss,
    /// An entry existed but was not this key's (or was damaged); it was compiled again.
    Replaced,
    /// The cache is not used (unsafe directory): compiled for this container only.
    Private,
}

/// What the cache holds for a key.
#[derive(Debug)]
pub enum Lookup {
    /// The entry, checked.
    Hit(PathBuf),
    /// No entry.
    Miss,
    /// An entry exists under the key's name but is refused; the reason is for the log.
    Refused(EntryError),
}

/// One engine's folder of the node's cache (see the module's docs).
pub struct ModuleCache {
    dir: PathBuf,
    max_bytes: u64,
    shared: bool,
}

/// A temp file of the cache being written; removed unless committed.
pub struct TempEntry {
    path: PathBuf,
    file: File,
    committed: bool,
}

impl TempEntry {
    /// Positioned after the header: the compiler appends the artifact.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for TempEntry {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ModuleCache {
    /// The cache for `engine_name` under `$WASMPOD_CACHE_DIR` (default [`DEFAULT_DIR`]),
    /// limited to `$WASMPOD_CACHE_MAX_BYTES` (default [`DEFAULT_MAX_BYTES`]). An unsafe
    /// directory is logged once and the cache left unused.
    pub fn for_engine(engine_name: &str) -> Self {
        let dir = base_dir().join(engine_name);
        let cache = Self::with_limit(dir, max_bytes_from_env());
        match secure_dir::ensure(&cache.dir) {
            Ok(()) => cache,
            Err(reason) => {
                tracing::error!(
                    dir = %cache.dir.display(),
                    %reason,
                    "module cache directory is not safe: not using it; every container's module is compiled for it alone"
                );
                Self::private()
            }
        }
    }

    /// A cache in `dir` with the default size limit.
    pub fn new(dir: PathBuf) -> Self {
        Self::with_limit(dir, DEFAULT_MAX_BYTES)
    }

    /// A cache in `dir` whose entries are evicted beyond `max_bytes` in total.
    pub fn with_limit(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            dir,
            max_bytes,
            shared: true,
        }
    }

    fn private() -> Self {
        Self {
            dir: PathBuf::from(PRIVATE_DIR),
            max_bytes: u64::MAX,
            shared: false,
        }
    }

    /// The folder of the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size limit of the entries, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// False when the cache directory was unsafe: entries are single-use and the caller
    /// removes them ([`ModuleCache::discard`]) once the container's module is loaded.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    fn entry_path(&self, key: &EntryKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// Finds `key`'s entry and checks it (header and digest, read in chunks).
    pub fn lookup(&self, key: &EntryKey) -> Lookup {
        if !self.shared {
            return Lookup::Miss;
        }
        let path = self.entry_path(key);
        match entry::verify(&path, key) {
            Ok(()) => {
                touch(&path);
                Lookup::Hit(path)
            }
            Err(EntryError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Lookup::Miss,
            Err(e) => Lookup::Refused(e),
        }
    }

    /// A new temp file in the cache, its header reserved and its offset after it.
    pub fn create_temp(&self) -> Result<TempEntry, CacheError> {
        secure_dir::create(&self.dir).map_err(io(&self.dir))?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = self.dir.join(format!(
            "{}{}-{}-{nanos}",
            evict::TMP_PREFIX,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io(&path))?;
        let temp = TempEntry {
            path,
            file: file.try_clone().map_err(io(&self.dir))?,
            committed: false,
        };
        entry::write_placeholder(&file).map_err(io(&temp.path))?;
        file.seek(SeekFrom::Start(entry::HEADER_LEN as u64))
            .map_err(io(&temp.path))?;
        Ok(temp)
    }

    /// Seals a written temp entry with `key`, makes it durable and moves it into place.
    /// A single-use (private) entry gets a name of its own.
    pub fn commit(&self, mut temp: TempEntry, key: &EntryKey) -> Result<PathBuf, CacheError> {
        entry::seal(&temp.file, key).map_err(|source| CacheError::Entry {
            path: temp.path.clone(),
            source,
        })?;
        temp.file.sync_all().map_err(io(&temp.path))?;
        let path = if self.shared {
            self.entry_path(key)
        } else {
            temp.path.with_extension("bin")
        };
        fs::rename(&temp.path, &path).map_err(io(&path))?;
        temp.committed = true;
        if self.shared {
            evict::evict(&self.dir, self.max_bytes, &path);
        }
        Ok(path)
    }

    /// Removes a single-use entry (no-op for a shared cache).
    pub fn discard(&self, artifact: &Path) {
        if !self.shared {
            if let Err(e) = fs::remove_file(artifact) {
                tracing::warn!(artifact = %artifact.display(), error = %e, "removing a private artifact");
            }
        }
    }

    /// Compiles in this process and loads the result. For tests and tools: the shim never
    /// compiles tenant bytes itself, it goes through [`crate::compile::Compiler`].
    pub fn get_or_compile<E: WasmEngine>(
        &self,
        engine: &E,
        source: &[u8],
    ) -> Result<(E::Module, PathBuf, Outcome), CacheError> {
        let key = EntryKey::for_source(source, &engine.compatibility_key());
        let outcome = match self.lookup(&key) {
            Lookup::Hit(path) => return Ok((load(engine, &path, &key)?, path, Outcome::Hit)),
            Lookup::Miss if self.shared => Outcome::Miss,
            Lookup::Miss => Outcome::Private,
            Lookup::Refused(e) => {
                tracing::warn!(error = %e, "refused cache entry, compiling again");
                Outcome::Replaced
            }
        };
        let artifact = engine.precompile(source)?;
        let temp = self.create_temp()?;
        temp.file
            .write_all_at(&artifact, entry::HEADER_LEN as u64)
            .map_err(io(&temp.path))?;
        let path = self.commit(temp, &key)?;
        Ok((load(engine, &path, &key)?, path, outcome))
    }
}

/// Reads, checks and loads the entry at `path`.
pub fn load<E: WasmEngine>(
    engine: &E,
    path: &Path,
    key: &EntryKey,
) -> Result<E::Module, CacheError> {
    let payload = entry::read_payload(path, key).map_err(|source| CacheError::Entry {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(engine.load(payload)?)
}

/// `$WASMPOD_CACHE_DIR`, default [`DEFAULT_DIR`]: the engines' caches and the compile slots.
pub fn base_dir() -> PathBuf {
    std::env::var_os(DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// Marks a hit entry as just used (its mtime is its LRU position). Failing only costs
/// recency, so it is logged, not returned.
fn touch(path: &Path) {
    let result = fs::File::options()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
    match result {
        Ok(()) => {}
        // Evicted by another shim after we checked it; the caller's load then misses.
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
