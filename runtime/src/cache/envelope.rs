//! A sealed cache artifact, for engines whose loader maps native code without checking it
//! (wasmer's `Module::deserialize`, libwasmedge's AOT section): the engine's output inside an
//! envelope that binds it to the engine build that wrote it.
//!
//! Layout: the envelope's magic (its name and version), sha256(compatibility key ‖ 0 ‖ payload)
//! (32 bytes), payload. Verifying the digest over the whole payload first means the engine only
//! ever parses bytes this engine build produced, byte for byte: a truncated, corrupted or
//! foreign file (another engine version, CPU or compiler setting) is an [`EngineError::Load`],
//! never executable garbage.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::engine::EngineError;

const DIGEST_LEN: usize = 32;

/// One engine's envelope format.
#[derive(Debug, Clone, Copy)]
pub struct Envelope {
    /// Written first; bump its version when the layout or the payload's meaning changes.
    magic: &'static [u8],
    /// For errors: "not a wasmpod ENGINE artifact".
    engine: &'static str,
}

impl Envelope {
    pub const fn new(magic: &'static [u8], engine: &'static str) -> Self {
        Self { magic, engine }
    }

    /// The magic as text, for compatibility keys (a new envelope version is a new key).
    pub fn version(&self) -> String {
        String::from_utf8_lossy(self.magic).into_owned()
    }

    fn header_len(&self) -> usize {
        self.magic.len() + DIGEST_LEN
    }

    /// Wraps the engine's output for the cache.
    pub fn seal(&self, key: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len() + payload.len());
        out.extend_from_slice(self.magic);
        out.extend_from_slice(&digest(key, payload));
        out.extend_from_slice(payload);
        out
    }

    /// Reads `path` once and returns the engine's output if, and only if, the file is this
    /// envelope sealed with `key` over exactly these bytes. The payload is a fresh allocation
    /// (wasmer requires its metadata to be 8-byte aligned).
    pub fn open(&self, key: &str, path: &Path) -> Result<Vec<u8>, EngineError> {
        let load_error = |reason: String| EngineError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let mut bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        let header_len = self.header_len();
        if bytes.len() < header_len || !bytes.starts_with(self.magic) {
            return Err(load_error(format!(
                "not a wasmpod {} artifact (bad header)",
                self.engine
            )));
        }
        if bytes[self.magic.len()..header_len] != digest(key, &bytes[header_len..]) {
            return Err(load_error(format!(
                "artifact digest mismatch: corrupted, or written by another engine build than `{key}`"
            )));
        }
        Ok(bytes.split_off(header_len))
    }
}

fn digest(key: &str, payload: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0u8]);
    hasher.update(payload);
    hasher.finalize().into()
}

/// The first 8 bytes of sha256(`details`) in hex: the tail of a compatibility key that names
/// everything an artifact's loadability depends on.
pub fn key_digest(details: &str) -> String {
    hex::encode(&Sha256::digest(details.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVELOPE: Envelope = Envelope::new(b"wasmpod-test/1", "test");
    const KEY: &str = "test-1.0-x86_64-0011223344556677";

    fn write(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join("a.bin");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn expect_load_error(key: &str, path: &Path, what: &str) {
        match ENVELOPE.open(key, path) {
            Err(EngineError::Load { path: p, reason }) => {
                assert_eq!(p, path, "{what}");
                assert!(!reason.is_empty(), "{what}");
            }
            other => panic!("{what}: expected a load error, got {other:?}"),
        }
    }

    #[test]
    fn sealed_payload_opens_with_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let payload = b"\0asm\x01\0\0\0 and some native code".to_vec();
        let sealed = ENVELOPE.seal(KEY, &payload);
        let path = write(dir.path(), &sealed);
        assert_eq!(ENVELOPE.open(KEY, &path).unwrap(), payload);
        expect_load_error("test-1.1-x86_64-0011223344556677", &path, "other key");

        for at in [
            0,
            ENVELOPE.magic.len() + 3,
            sealed.len() / 2,
            sealed.len() - 1,
        ] {
            let mut flipped = sealed.clone();
            flipped[at] ^= 0x40;
            let path = write(dir.path(), &flipped);
            expect_load_error(KEY, &path, &format!("bit flipped at {at}"));
        }
        let path = write(dir.path(), &sealed[..sealed.len() - 1]);
        expect_load_error(KEY, &path, "truncated");
        let path = write(dir.path(), &sealed[..ENVELOPE.header_len() - 1]);
        expect_load_error(KEY, &path, "shorter than the header");
        let path = write(dir.path(), &payload);
        expect_load_error(KEY, &path, "bare payload");
        expect_load_error(KEY, &dir.path().join("missing.bin"), "missing file");
    }

    #[test]
    fn another_envelope_is_refused_naming_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let other = Envelope::new(b"wasmpod-other/1", "other");
        let path = write(dir.path(), &other.seal(KEY, b"payload"));
        match ENVELOPE.open(KEY, &path) {
            Err(EngineError::Load { reason, .. }) => {
                assert!(reason.contains("not a wasmpod test artifact"), "{reason}")
            }
            other => panic!("expected a load error, got {other:?}"),
        }
    }
}
