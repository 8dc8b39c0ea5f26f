//! The cache artifact: WasmEdge's AOT output inside an envelope that binds it to the engine build
//! that wrote it, and the compatibility key that names that build.
//!
//! The payload is a "universal wasm" file: the module with WasmEdge's native code in a custom
//! section. The layout and its checks are `wasmpod_runtime::cache::envelope`'s.
//!
//! Why an envelope: in AOT mode libwasmedge maps and runs the native code of that section as it
//! finds it; it checks the section's format version, not the code. Verifying a digest over the
//! whole payload first means libwasmedge only ever gets code this engine build compiled, byte
//! for byte: a truncated, corrupted or foreign file (another WasmEdge version, CPU or compiler
//! setting) is an `EngineError::Load`, never executable garbage. The universal format (rather
//! than WasmEdge's shared-library output) is what makes that possible: it loads from a buffer,
//! so nothing re-reads the file after the check.

use wasmpod_runtime::cache::envelope::{key_digest, Envelope};

/// The cache artifact's envelope; bump its version when the payload's meaning changes.
pub const ENVELOPE: Envelope = Envelope::new(b"wasmpod-wasmedge/1", "wasmedge");

/// Everything an artifact's loadability depends on: the version of the libwasmedge that compiled
/// it (its AOT section format and runtime ABI), the compiler settings, the target and the host
/// CPU's features (the code is compiled for this CPU), and the envelope version.
pub fn compatibility_key(library_version: &str, settings: &str, cpu_features: &str) -> String {
    let arch = std::env::consts::ARCH;
    let details = format!(
        "{library_version}|{settings}|{arch}|{cpu_features}|{}",
        ENVELOPE.version()
    );
    format!("wasmedge-{library_version}-{arch}-{}", key_digest(&details))
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

#[cfg(test)]
mod tests {
    use super::*;

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
