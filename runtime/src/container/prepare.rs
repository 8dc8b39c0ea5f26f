//! Making a detected wasm workload ready for the zygote: the module's artifact from the node's
//! cache, compiled by the node's compile process on a miss (once per module on the node).

use std::path::PathBuf;

use crate::cache::{EntryKey, Lookup, ModuleCache};
use crate::compile::{Compiler, SealedModule, SourceError};
use crate::detect::{ModuleSource, WasmFormat, Workload};
use crate::engine::{EngineError, WasmEngine};
use crate::zygote::{PreparedWorkload, ZygoteError};

use super::CreateError;

/// What turns a detected wasm workload into a loadable artifact: the engine (for its
/// compatibility key), the node's cache and its compiler.
pub struct Preparer<'a, E: WasmEngine> {
    /// The engine.
    pub engine: &'a E,
    /// The node's module cache for this engine.
    pub cache: &'a ModuleCache,
    /// Runs the compile process on a cache miss.
    pub compiler: &'a Compiler,
}

/// A workload made ready for the zygote.
pub(super) struct Prepared<'a> {
    pub workload: PreparedWorkload,
    pub wasm: bool,
    /// A single-use artifact (the cache directory is unsafe), removed once the zygote is done.
    private: Option<(PathBuf, &'a ModuleCache)>,
}

impl Prepared<'_> {
    /// `sha256:<hex>` of the wasm module, none for a native workload.
    pub fn module_digest(&self) -> Option<String> {
        match &self.workload {
            PreparedWorkload::Wasm { module_sha256, .. } => Some(format!("sha256:{module_sha256}")),
            PreparedWorkload::Native => None,
        }
    }

    /// Removes a single-use artifact now that the zygote has loaded it (or failed to).
    pub fn finish<T>(&self, result: Result<T, ZygoteError>) -> Result<T, ZygoteError> {
        if let Some((artifact, cache)) = &self.private {
            cache.discard(artifact);
        }
        result
    }
}

/// Turns a detected workload into what the zygote worker needs: for wasm, the module's
/// artifact from the cache, compiled by the node's compile process on a miss. The shim itself
/// only copies and hashes the module; the zygote loads the artifact and checks the entry point.
pub(super) fn prepare<'a, E: WasmEngine>(
    preparer: &Preparer<'a, E>,
    id: &str,
    workload: Workload<'_>,
) -> Result<Prepared<'a>, CreateError> {
    let Workload::Wasm {
        path,
        func,
        source,
        format,
    } = workload
    else {
        return Ok(Prepared {
            workload: PreparedWorkload::Native,
            wasm: false,
            private: None,
        });
    };
    if format == WasmFormat::Component && !E::SUPPORTS_COMPONENTS {
        return Err(CreateError::Module {
            path,
            source: EngineError::ComponentUnsupported { engine: E::NAME },
        });
    }
    let limit = crate::resolve::max_module_bytes();
    let module = match source {
        ModuleSource::File(mut file) => {
            // Detection may have read the head: the copy starts from the first byte.
            std::io::Seek::rewind(&mut file).map_err(|source| SourceError::Read {
                path: path.clone(),
                source,
            })?;
            SealedModule::copy_from(&path, file, limit)?
        }
        ModuleSource::Bytes(bytes) => SealedModule::copy_from(&path, bytes, limit)?,
    };
    let key = EntryKey::new(*module.sha256(), &preparer.engine.compatibility_key());
    let cache = preparer.cache;
    let lookup_span = tracing::info_span!(target: crate::TRACE_TARGET, "cache_lookup", id, cache.result = tracing::field::Empty).entered();
    let lookup = cache.lookup(&key);
    lookup_span.record(
        "cache.result",
        match &lookup {
            Lookup::Hit(_) => "hit",
            Lookup::Refused(_) => "refused",
            Lookup::Miss => "miss",
        },
    );
    drop(lookup_span);
    let (artifact, verdict) = match lookup {
        Lookup::Hit(artifact) => (artifact, "hit"),
        lookup => {
            // One compile per module on the node: wait for another shim's, then look again.
            let wait = preparer.compiler.config().timeout + COMPILE_LOCK_MARGIN;
            let lock = cache.lock_compile(&key, wait)?;
            let waited = lock.as_ref().is_some_and(|l| !l.waited.is_zero());
            match (waited, cache.lookup(&key)) {
                (true, Lookup::Hit(artifact)) => {
                    (artifact, "hit, compiled by another shim meanwhile")
                }
                _ => compile_entry(
                    preparer,
                    id,
                    (&path, func.as_deref()),
                    &module,
                    &key,
                    lookup,
                )?,
            }
        }
    };
    tracing::info!(id, module = %path, cache = verdict, "module prepared");
    let private = (!cache.is_shared()).then(|| (artifact.clone(), cache));
    Ok(Prepared {
        workload: PreparedWorkload::Wasm {
            artifact,
            module_sha256: module.sha256_hex(),
            module_path: path,
            func,
        },
        wasm: true,
        private,
    })
}

/// How much longer than a compile's time limit a shim waits for another shim's compile of the
/// same module before it compiles the module itself.
const COMPILE_LOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Compiles `module` in the node's compile process into a new cache entry.
fn compile_entry<E: WasmEngine>(
    preparer: &Preparer<E>,
    id: &str,
    (path, entry): (&str, Option<&str>),
    module: &SealedModule,
    key: &EntryKey,
    lookup: Lookup,
) -> Result<(PathBuf, &'static str), CreateError> {
    let cache = preparer.cache;
    let _compile_span = tracing::info_span!(target: crate::TRACE_TARGET, "compile", id).entered();
    if let Lookup::Refused(reason) = &lookup {
        tracing::warn!(id, module = %path, entry = %key.file_name(), %reason, "cache entry refused, compiling again");
    }
    let temp = cache.create_temp()?;
    let stats = preparer
        .compiler
        .compile(path, entry, module, temp.file())?;
    tracing::info!(
        id,
        module = %path,
        queued_ms = stats.queued.as_millis() as u64,
        compile_ms = stats.compiled.as_millis() as u64,
        compile_peak_kib = stats.peak_rss_kib.unwrap_or(0),
        "module compiled"
    );
    let verdict = match (lookup, cache.is_shared()) {
        (_, false) => "not used (unsafe directory), compiled for this container",
        (Lookup::Refused(_), true) => "refused entry, recompiled",
        _ => "miss, compiled",
    };
    Ok((cache.commit(temp, key)?, verdict))
}
