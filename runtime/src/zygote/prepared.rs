//! What the zygote keeps ready between containers, so a worker forks with it in memory instead
//! of building it again: the engine, recently used modules and the guest seccomp filter.
//!
//! Everything here is built in the zygote itself, which must stay single-threaded: loading an
//! artifact maps it and starts no thread, and the caller checks the thread count after each
//! request before forking. Nothing is ever compiled here: the node's compile process wrote the
//! artifact into the cache, and it is loaded here only if its entry is this module's, for this
//! engine, byte for byte ([`crate::cache::entry`]). The entry point is checked here too, so the
//! shim never loads a module itself.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use seccompiler::BpfProgram;

use super::protocol::Failure;
use crate::cache::EntryKey;
use crate::engine::WasmEngine;

/// Modules kept loaded; the oldest is dropped beyond this.
const MODULES_KEPT: usize = 16;

/// A cache entry's identity. Entries are replaced by rename, never rewritten in place, so a
/// new entry is a new inode; the open file keeps the inode number from being reused while the
/// module is kept. (The mtime is no part of it: every cache hit refreshes it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ArtifactId {
    dev: u64,
    ino: u64,
    size: u64,
}

struct Kept<M> {
    id: ArtifactId,
    module_sha256: String,
    _file: File,
    module: M,
}

pub(super) struct Prepared<E: WasmEngine> {
    engine: Option<E>,
    /// Most recently used last.
    modules: Vec<Kept<E::Module>>,
    seccomp: Option<BpfProgram>,
}

/// What a worker needs to run one wasm container.
pub(super) struct WasmParts<E: WasmEngine> {
    pub engine: E,
    pub module: E::Module,
    pub seccomp: BpfProgram,
    /// Whether the module was already loaded by an earlier container.
    pub reused: bool,
}

impl<E: WasmEngine> Prepared<E> {
    pub fn new() -> Self {
        Self {
            engine: None,
            modules: Vec::new(),
            seccomp: None,
        }
    }

    /// Builds the engine and the seccomp filter ahead of the first wasm container; an error
    /// here is reported to that container instead.
    pub fn warm(&mut self) {
        let _ = self.engine();
        let _ = self.seccomp();
    }

    fn engine(&mut self) -> Result<E, Failure> {
        if let Some(engine) = &self.engine {
            return Ok(engine.clone());
        }
        let engine = E::new().map_err(|e| Failure::internal(e.to_string()))?;
        Ok(self.engine.insert(engine).clone())
    }

    fn seccomp(&mut self) -> Result<BpfProgram, Failure> {
        if let Some(filter) = &self.seccomp {
            return Ok(filter.clone());
        }
        let filter =
            crate::seccomp::guest_filter().map_err(|e| Failure::internal(e.to_string()))?;
        Ok(self.seccomp.insert(filter).clone())
    }

    /// The engine, the module loaded from `artifact` (the entry of the module whose sha256 is
    /// `module_sha256`) with its entry point `func` checked, and the seccomp filter, building
    /// each on first use only. A missing entry point is the module's fault (invalid
    /// argument); anything else is the node's (internal).
    pub fn wasm(
        &mut self,
        artifact: &Path,
        module_sha256: &str,
        func: Option<&str>,
    ) -> Result<WasmParts<E>, Failure> {
        let engine = self.engine()?;
        let seccomp = self.seccomp()?;
        let (module, reused) = self.module(&engine, artifact, module_sha256)?;
        engine
            .check_entry(&module, func)
            .map_err(|e| Failure::invalid(e.to_string()))?;
        Ok(WasmParts {
            engine,
            module,
            seccomp,
            reused,
        })
    }

    fn module(
        &mut self,
        engine: &E,
        artifact: &Path,
        module_sha256: &str,
    ) -> Result<(E::Module, bool), Failure> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(artifact)
            .map_err(|e| Failure::internal(format!("{}: {e}", artifact.display())))?;
        let meta = file
            .metadata()
            .map_err(|e| Failure::internal(format!("{}: {e}", artifact.display())))?;
        let id = ArtifactId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
        };
        if let Some(pos) = self
            .modules
            .iter()
            .position(|k| k.id == id && k.module_sha256 == module_sha256)
        {
            let kept = self.modules.remove(pos);
            let module = kept.module.clone();
            self.modules.push(kept);
            return Ok((module, true));
        }
        let mut sha = [0u8; 32];
        hex::decode_to_slice(module_sha256, &mut sha)
            .map_err(|e| Failure::internal(format!("bad module digest {module_sha256:?}: {e}")))?;
        let key = EntryKey::new(sha, &engine.compatibility_key());
        let module = crate::cache::load(engine, artifact, &key)
            .map_err(|e| Failure::internal(e.to_string()))?;
        if self.modules.len() >= MODULES_KEPT {
            self.modules.remove(0);
        }
        self.modules.push(Kept {
            id,
            module_sha256: module_sha256.to_string(),
            _file: file,
            module: module.clone(),
        });
        Ok((module, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry;
    use crate::engine::{EngineError, GuestContext};
    use crate::ErrorKind;
    use sha2::{Digest, Sha256};

    /// Loads an artifact as its text: enough to see which file a kept module came from.
    #[derive(Clone)]
    struct TextEngine;

    impl WasmEngine for TextEngine {
        const NAME: &'static str = "text";
        type Module = String;
        fn new() -> Result<Self, EngineError> {
            Ok(Self)
        }
        fn compatibility_key(&self) -> String {
            "text".into()
        }
        fn precompile(&self, source: &[u8]) -> Result<Vec<u8>, EngineError> {
            Ok(source.to_vec())
        }
        fn load(&self, artifact: Vec<u8>) -> Result<String, EngineError> {
            String::from_utf8(artifact).map_err(|e| EngineError::Other(e.to_string()))
        }
        fn function_exports(&self, text: &String) -> Vec<String> {
            vec![text.clone()]
        }
        fn run(&self, _: &String, _: &GuestContext) -> Result<i32, EngineError> {
            Ok(0)
        }
    }

    /// The module whose artifact is `text`.
    fn module_sha(text: &str) -> String {
        hex::encode(Sha256::digest(format!("module {text}")))
    }

    /// Writes a sealed cache entry holding `text` for the module of [`module_sha`].
    fn write_entry(path: &Path, text: &str) {
        let mut sha = [0u8; 32];
        hex::decode_to_slice(module_sha(text), &mut sha).unwrap();
        let key = EntryKey::new(sha, "text");
        entry::write_for_test(path, &key, text.as_bytes());
    }

    fn load(prepared: &mut Prepared<TextEngine>, path: &Path, text: &str) -> (String, bool) {
        let parts = prepared.wasm(path, &module_sha(text), Some(text)).unwrap();
        (parts.module, parts.reused)
    }

    #[test]
    fn same_entry_is_reused_and_a_replaced_one_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        write_entry(&path, "one");
        let mut prepared = Prepared::<TextEngine>::new();
        assert_eq!(load(&mut prepared, &path, "one"), ("one".into(), false));
        assert_eq!(load(&mut prepared, &path, "one"), ("one".into(), true));

        // The cache replaces entries by rename: a new inode.
        let tmp = dir.path().join("tmp");
        write_entry(&tmp, "two");
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(load(&mut prepared, &path, "two"), ("two".into(), false));
    }

    #[test]
    fn another_modules_entry_and_a_missing_entry_point_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        write_entry(&path, "one");
        let mut prepared = Prepared::<TextEngine>::new();
        let err = prepared
            .wasm(&path, &module_sha("two"), None)
            .err()
            .unwrap();
        assert!(err.message.contains("another module"), "{err:?}");
        assert_eq!(
            err.kind,
            ErrorKind::Internal,
            "the node's cache, not the module"
        );
        let err = prepared
            .wasm(&path, &module_sha("one"), Some("nope"))
            .err()
            .unwrap();
        assert!(err.message.contains("export `nope` not found"), "{err:?}");
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "the module's fault");
    }

    #[test]
    fn least_recently_used_module_is_dropped_beyond_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<_> = (0..=MODULES_KEPT)
            .map(|i| {
                let path = dir.path().join(format!("{i}.bin"));
                write_entry(&path, &i.to_string());
                (path, i.to_string())
            })
            .collect();
        let mut prepared = Prepared::<TextEngine>::new();
        for (path, text) in &entries[..MODULES_KEPT] {
            load(&mut prepared, path, text);
        }
        // Use the first again, so the second is now the oldest.
        assert!(load(&mut prepared, &entries[0].0, &entries[0].1).1);
        let (last, text) = &entries[MODULES_KEPT];
        load(&mut prepared, last, text);
        assert_eq!(prepared.modules.len(), MODULES_KEPT);
        assert!(load(&mut prepared, &entries[0].0, &entries[0].1).1);
        assert!(
            !load(&mut prepared, &entries[1].0, &entries[1].1).1,
            "the oldest was kept"
        );
    }

    #[test]
    fn missing_artifact_is_an_error_naming_it() {
        let mut prepared = Prepared::<TextEngine>::new();
        let err = prepared
            .wasm(Path::new("/nonexistent/m.bin"), &module_sha("x"), None)
            .err()
            .unwrap();
        assert!(err.message.contains("/nonexistent/m.bin"), "{err:?}");
    }
}
