//! The compatibility key that names the WasmEdge build of the cache's artifacts.
//!
//! The artifact is a "universal wasm" file: the module with WasmEdge's native code in a custom
//! section. In AOT mode libwasmedge maps and runs that code as it finds it; it checks the
//! section's format version, not the code. The cache entry binds the bytes to the module and
//! this key (`wasmpod_runtime::cache::entry`), so libwasmedge only ever gets code this engine
//! build compiled for this module, byte for byte. The universal format (rather than WasmEdge's
//! shared-library output) is what makes that possible: it loads from a buffer, so nothing
//! re-reads the file after the check.

use wasmpod_runtime::cache::entry::key_digest;

/// The payload's format; bump it when what `precompile` returns changes meaning.
const PAYLOAD_FORMAT: &str = "wasmedge-universal/2";

/// Everything an artifact's loadability depends on: the version of the libwasmedge that compiled
/// it (its AOT section format and runtime ABI), the compiler settings, the target and the host
/// CPU's features (the code is compiled for this CPU), and the payload format.
pub fn compatibility_key(library_version: &str, settings: &str, cpu_features: &str) -> String {
    let arch = std::env::consts::ARCH;
    let details = format!("{library_version}|{settings}|{arch}|{cpu_features}|{PAYLOAD_FORMAT}");
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
