//! The cache artifact: wasmer's serialized module inside an envelope that binds it to the
//! engine build that wrote it.
//!
//! Layout: [`MAGIC`] (16 bytes), sha256(compatibility key ‖ 0 ‖ payload) (32 bytes), payload.
//!
//! Why an envelope: wasmer 7.4.2's `Module::deserialize` (despite its name) runs the *unchecked*
//! loader, and even its checked loader only validates the metadata's structure, not the machine
//! code bytes; a file that starts with an ELF header is routed to another, unchecked, loader.
//! Verifying a digest over the whole payload first means wasmer only ever parses bytes this
//! engine build produced byte for byte: a truncated, corrupted or foreign file (other wasmer
//! version, other CPU features, other compiler settings) is an [`EngineError::Load`], never
//! executable garbage.

use std::path::Path;

use sha2::{Digest, Sha256};
use wasmer::sys::NativeEngineExt;
use wasmer::Engine;
use wasmpod_runtime::EngineError;

/// The wasmer version pinned in the workspace; bump it with the pin.
pub const WASMER_VERSION: &str = "7.4.2";
/// Version of this envelope.
const MAGIC: &[u8; 16] = b"wasmpod-wasmer/1";
const DIGEST_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + DIGEST_LEN;

/// Everything a serialized wasmer artifact's loadability depends on: the wasmer version (its
/// archive format and VM ABI), the compiler and its settings (`deterministic_id`, e.g.
/// `cranelift-opt_speed`), the target triple and the host CPU features the code was compiled
/// for (wasmer refuses artifacts needing features this CPU lacks), and the envelope version.
pub fn compatibility_key(engine: &Engine) -> String {
    let target = engine.target();
    let details = format!(
        "{}|{}|{:?}|{}",
        engine.deterministic_id(),
        target.triple(),
        target.cpu_features(),
        String::from_utf8_lossy(MAGIC),
    );
    let digest = Sha256::digest(details.as_bytes());
    format!(
        "wasmer-{WASMER_VERSION}-{}-{}",
        target.triple(),
        hex(&digest[..8])
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(key: &str, payload: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0u8]);
    hasher.update(payload);
    hasher.finalize().into()
}

/// Wraps wasmer's serialized module for the cache.
pub fn seal(key: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&digest(key, payload));
    out.extend_from_slice(payload);
    out
}

/// Reads `path` once and returns wasmer's serialized module if, and only if, the file is an
/// envelope sealed with `key` over exactly these bytes.
pub fn open(key: &str, path: &Path) -> Result<Vec<u8>, EngineError> {
    let load_error = |reason: String| EngineError::Load {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(load_error(
            "not a wasmpod wasmer artifact (bad header)".into(),
        ));
    }
    let expected = digest(key, &bytes[HEADER_LEN..]);
    if bytes[MAGIC.len()..HEADER_LEN] != expected {
        return Err(load_error(format!(
            "artifact digest mismatch: corrupted, or written by another engine build than `{key}`"
        )));
    }
    // A fresh allocation: wasmer requires its metadata to be 8-byte aligned.
    Ok(bytes.split_off(HEADER_LEN))
}
