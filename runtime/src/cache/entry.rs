//! A cache entry on disk: a header that binds the artifact to its key, then the engine's
//! artifact (the payload).
//!
//! Header: [`MAGIC`], sha256 of the module source, sha256 of the engine's compatibility key,
//! sha256 of the payload. An entry is used only when all three match: an entry copied over
//! another module's file, written by another engine build, truncated or corrupted is refused
//! (and compiled again), never handed to an engine loader. Engine loaders map native code
//! without checking it, so only bytes this node's compiler wrote, byte for byte, may reach them.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Bump the version when the layout changes.
pub const MAGIC: &[u8; 16] = b"wasmpod-cache/1\n";
const DIGEST: usize = 32;
/// Bytes before the payload.
pub const HEADER_LEN: usize = MAGIC.len() + 3 * DIGEST;
const CHUNK: usize = 256 * 1024;

/// Why an entry is not used.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Reading it failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No [`MAGIC`], or too short for a header.
    #[error("not a wasmpod cache entry (bad header)")]
    BadHeader,
    /// The entry of another module.
    #[error("holds the artifact of another module (sha256 {found})")]
    OtherModule {
        /// That module's sha256.
        found: String,
    },
    /// Written by an engine with another compatibility key.
    #[error("written by another engine build")]
    OtherEngine,
    /// The payload does not match its digest.
    #[error("artifact digest mismatch: truncated or corrupted")]
    Corrupted,
    /// No payload.
    #[error("empty artifact")]
    Empty,
}

/// What an entry must be: the module's sha256 and the engine's compatibility key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryKey {
    module: [u8; DIGEST],
    engine: [u8; DIGEST],
}

impl EntryKey {
    /// The key of the module whose sha256 is `module_sha256`, for the engine of
    /// `compatibility_key` ([`crate::WasmEngine::compatibility_key`]).
    pub fn new(module_sha256: [u8; 32], compatibility_key: &str) -> Self {
        Self {
            module: module_sha256,
            engine: Sha256::digest(compatibility_key.as_bytes()).into(),
        }
    }

    /// The key of the module `source` for the engine of `compatibility_key`.
    pub fn for_source(source: &[u8], compatibility_key: &str) -> Self {
        Self::new(Sha256::digest(source).into(), compatibility_key)
    }

    /// The module's sha256 in hex.
    pub fn module_hex(&self) -> String {
        hex::encode(self.module)
    }

    /// `<module sha256>-<16 hex digits of the engine key's digest>.bin`.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}.bin",
            self.module_hex(),
            &hex::encode(self.engine)[..16]
        )
    }

    fn header(&self, payload: &[u8; DIGEST]) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        let mut at = MAGIC.len();
        for part in [&self.module, &self.engine, payload] {
            header[at..at + DIGEST].copy_from_slice(part);
            at += DIGEST;
        }
        header
    }

    /// Checks a header against this key; returns the payload digest it names.
    fn check(&self, header: &[u8]) -> Result<[u8; DIGEST], EntryError> {
        if header.len() < HEADER_LEN || !header.starts_with(MAGIC) {
            return Err(EntryError::BadHeader);
        }
        let part = |i: usize| &header[MAGIC.len() + i * DIGEST..MAGIC.len() + (i + 1) * DIGEST];
        if part(0) != self.module {
            return Err(EntryError::OtherModule {
                found: hex::encode(part(0)),
            });
        }
        if part(1) != self.engine {
            return Err(EntryError::OtherEngine);
        }
        let mut digest = [0u8; DIGEST];
        digest.copy_from_slice(part(2));
        Ok(digest)
    }
}

/// Writes a zeroed header: the compiler appends the payload after it, [`seal`] fills it in.
pub fn write_placeholder(file: &File) -> std::io::Result<()> {
    file.write_all_at(&[0u8; HEADER_LEN], 0)
}

/// Digests the payload the compiler wrote after the placeholder and writes the real header.
pub fn seal(file: &File, key: &EntryKey) -> Result<(), EntryError> {
    let (digest, len) = digest_payload(file)?;
    if len == 0 {
        return Err(EntryError::Empty);
    }
    file.write_all_at(&key.header(&digest), 0)?;
    Ok(())
}

fn digest_payload(file: &File) -> std::io::Result<([u8; DIGEST], u64)> {
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut offset = HEADER_LEN as u64;
    loop {
        let n = file.read_at(&mut chunk, offset)?;
        if n == 0 {
            return Ok((hasher.finalize().into(), offset - HEADER_LEN as u64));
        }
        hasher.update(&chunk[..n]);
        offset += n as u64;
    }
}

/// Checks the entry at `path` against `key`, reading it in chunks (constant memory).
pub fn verify(path: &Path, key: &EntryKey) -> Result<(), EntryError> {
    let file = open(path)?;
    let mut header = [0u8; HEADER_LEN];
    let n = file.read_at(&mut header, 0)?;
    let expected = key.check(&header[..n])?;
    let (digest, len) = digest_payload(&file)?;
    if len == 0 {
        return Err(EntryError::Empty);
    }
    if digest != expected {
        return Err(EntryError::Corrupted);
    }
    Ok(())
}

/// Reads the entry at `path` once and returns its payload if, and only if, it is `key`'s.
/// The payload is an allocation of its own (wasmer wants its metadata 8-byte aligned).
pub fn read_payload(path: &Path, key: &EntryKey) -> Result<Vec<u8>, EntryError> {
    let mut file = open(path)?;
    let mut header = [0u8; HEADER_LEN];
    file.read_exact(&mut header).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => EntryError::BadHeader,
        _ => EntryError::Io(e),
    })?;
    let expected = key.check(&header)?;
    let mut payload = Vec::new();
    file.read_to_end(&mut payload)?;
    if payload.is_empty() {
        return Err(EntryError::Empty);
    }
    if <[u8; DIGEST]>::from(Sha256::digest(&payload)) != expected {
        return Err(EntryError::Corrupted);
    }
    Ok(payload)
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The first 8 bytes of sha256(`details`) in hex: the tail of a compatibility key that names
/// everything an artifact's loadability depends on.
pub fn key_digest(details: &str) -> String {
    hex::encode(&Sha256::digest(details.as_bytes())[..8])
}

/// Writes a sealed entry holding `payload` for `key` at `path` (tests).
#[cfg(test)]
pub(crate) fn write_for_test(path: &Path, key: &EntryKey, payload: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("creating a test entry");
    write_placeholder(&file).expect("writing the header");
    file.write_all_at(payload, HEADER_LEN as u64)
        .expect("writing the payload");
    seal(&file, key).expect("sealing the test entry");
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE: &str = "test-1.0-x86_64-0011223344556677";

    fn key(module: &[u8]) -> EntryKey {
        EntryKey::new(Sha256::digest(module).into(), ENGINE)
    }

    fn entry(dir: &Path, name: &str, key: &EntryKey, payload: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        write_for_test(&path, key, payload);
        path
    }

    #[test]
    fn an_entry_opens_with_its_own_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = key(b"module a");
        let path = entry(dir.path(), "a.bin", &a, b"native code of a");
        verify(&path, &a).unwrap();
        assert_eq!(read_payload(&path, &a).unwrap(), b"native code of a");

        // Copied over module b's file: refused, naming what it holds.
        let b = key(b"module b");
        let err = verify(&path, &b).unwrap_err();
        assert!(matches!(err, EntryError::OtherModule { .. }), "{err}");
        assert!(read_payload(&path, &b).is_err());

        let other_engine = EntryKey::new(Sha256::digest(b"module a").into(), "test-2.0");
        assert!(matches!(
            verify(&path, &other_engine),
            Err(EntryError::OtherEngine)
        ));
    }

    #[test]
    fn corruption_and_truncation_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = key(b"module a");
        let path = entry(dir.path(), "a.bin", &a, b"native code of a");
        let sealed = std::fs::read(&path).unwrap();
        for at in [0, HEADER_LEN - 1, HEADER_LEN, sealed.len() - 1] {
            let mut flipped = sealed.clone();
            flipped[at] ^= 0x40;
            std::fs::write(&path, &flipped).unwrap();
            assert!(verify(&path, &a).is_err(), "bit flipped at {at}");
            assert!(read_payload(&path, &a).is_err(), "bit flipped at {at}");
        }
        std::fs::write(&path, &sealed[..sealed.len() - 1]).unwrap();
        assert!(matches!(verify(&path, &a), Err(EntryError::Corrupted)));
        std::fs::write(&path, &sealed[..HEADER_LEN - 1]).unwrap();
        assert!(matches!(verify(&path, &a), Err(EntryError::BadHeader)));
        std::fs::write(&path, &sealed[..HEADER_LEN]).unwrap();
        assert!(matches!(verify(&path, &a), Err(EntryError::Empty)));
    }

    #[test]
    fn a_symlinked_entry_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let a = key(b"module a");
        let real = entry(dir.path(), "real.bin", &a, b"code");
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(verify(&link, &a), Err(EntryError::Io(_))));
    }
}
