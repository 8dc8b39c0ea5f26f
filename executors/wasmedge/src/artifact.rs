//! The cache artifact: WasmEdge's AOT output inside an envelope that binds it to the engine build
//! that wrote it, and the compatibility key that names that build.
//!
//! Layout: [`MAGIC`], sha256(compatibility key ‖ 0 ‖ payload) (32 bytes), payload. The payload
//! is a "universal wasm" file: the module with WasmEdge's native code in a custom section.
//!
//! Why an envelope: in AOT mode libwasmedge maps and runs the native code of that section as it
//! finds it; it checks the section's format version, not the code. Verifying a digest over the
//! whole payload first means libwasmedge only ever gets code this engine build compiled, byte
//! for byte: a truncated, corrupted or foreign file (another WasmEdge version, CPU or compiler
//! setting) is an [`EngineError::Load`], never executable garbage. The universal format (rather
//! than WasmEdge's shared-library output) is what makes that possible: it loads from a buffer,
//! so nothing re-reads the file after the check.

use std::path::Path;

use sha2::{Digest, Sha256};
use wasmpod_runtime::EngineError;

/// Version of this envelope.
const MAGIC: &[u8] = b"wasmpod-wasmedge/1";
const DIGEST_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + DIGEST_LEN;

/// Everything an artifact's loadability depends on: the version of the libwasmedge that compiled
/// it (its AOT section format and runtime ABI), the compiler settings, the target and the host
/// CPU's features (the code is compiled for this CPU), and the envelope version.
pub fn compatibility_key(library_version: &str, settings: &str, cpu_features: &str) -> String {
    let arch = std::env::consts::ARCH;
    let details = format!(
        "{library_version}|{settings}|{arch}|{cpu_features}|{}",
        String::from_utf8_lossy(MAGIC)
    );
    let digest = Sha256::digest(details.as_bytes());
    format!("wasmedge-{library_version}-{arch}-{}", hex(&digest[..8]))
}

/// The host CPU's feature flags as the kernel lists them (`flags` on x86, `Features` on arm),
/// or an empty string where /proc/cpuinfo cannot say.
pub fn cpu_features() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            matches!(name.trim(), "flags" | "Features").then(|| value.trim().to_string())
        })
        .unwrap_or_default()
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

/// Wraps WasmEdge's AOT output for the cache.
pub fn seal(key: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&digest(key, payload));
    out.extend_from_slice(payload);
    out
}

/// Reads `path` once and returns WasmEdge's AOT output if, and only if, the file is an envelope
/// sealed with `key` over exactly these bytes.
pub fn open(key: &str, path: &Path) -> Result<Vec<u8>, EngineError> {
    let load_error = |reason: String| EngineError::Load {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(load_error(
            "not a wasmpod wasmedge artifact (bad header)".into(),
        ));
    }
    if bytes[MAGIC.len()..HEADER_LEN] != digest(key, &bytes[HEADER_LEN..]) {
        return Err(load_error(format!(
            "artifact digest mismatch: corrupted, or written by another engine build than `{key}`"
        )));
    }
    Ok(bytes.split_off(HEADER_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "wasmedge-0.17.1-x86_64-0011223344556677";

    fn write(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join("a.bin");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn expect_load_error(key: &str, path: &Path, what: &str) {
        match open(key, path) {
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
        let sealed = seal(KEY, &payload);
        let path = write(dir.path(), &sealed);
        assert_eq!(open(KEY, &path).unwrap(), payload);
        expect_load_error(
            "wasmedge-0.17.2-x86_64-0011223344556677",
            &path,
            "other key",
        );

        for at in [0, MAGIC.len() + 3, sealed.len() / 2, sealed.len() - 1] {
            let mut flipped = sealed.clone();
            flipped[at] ^= 0x40;
            let path = write(dir.path(), &flipped);
            expect_load_error(KEY, &path, &format!("bit flipped at {at}"));
        }
        let path = write(dir.path(), &sealed[..sealed.len() - 1]);
        expect_load_error(KEY, &path, "truncated");
        let path = write(dir.path(), &sealed[..HEADER_LEN - 1]);
        expect_load_error(KEY, &path, "shorter than the header");
        // The bare AOT output, as `wasmedge compile` would write it.
        let path = write(dir.path(), &payload);
        expect_load_error(KEY, &path, "bare universal wasm");
        expect_load_error(KEY, &dir.path().join("missing.bin"), "missing file");
    }

    #[test]
    fn key_names_the_library_and_changes_with_what_the_code_depends_on() {
        let key = compatibility_key("0.17.1", "O2", "sse2 avx2");
        assert!(
            key.starts_with(&format!("wasmedge-0.17.1-{}-", std::env::consts::ARCH)),
            "{key}"
        );
        assert_eq!(key, compatibility_key("0.17.1", "O2", "sse2 avx2"));
        assert_ne!(key, compatibility_key("0.17.2", "O2", "sse2 avx2"));
        assert_ne!(key, compatibility_key("0.17.1", "O3", "sse2 avx2"));
        assert_ne!(key, compatibility_key("0.17.1", "O2", "sse2"));
    }

    #[test]
    fn cpu_features_come_from_cpuinfo() {
        let features = cpu_features();
        if std::path::Path::new("/proc/cpuinfo").exists() && cfg!(target_arch = "x86_64") {
            assert!(features.split(' ').any(|f| f == "sse2"), "{features}");
        }
    }
}
