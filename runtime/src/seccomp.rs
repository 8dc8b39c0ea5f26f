//! wasmpod's own seccomp profile for wasm guests (`seccomp-profiles/wasm-guest.json`), on top of
//! the spec's filter: defence in depth for code running inside the engine.

use seccompiler::{BpfProgram, TargetArch};

const PROFILE: &str = include_str!("../../seccomp-profiles/wasm-guest.json");
const FILTER: &str = "wasm_guest";

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("wasm guest seccomp profile: {0}")]
    Compile(String),
    #[error("installing the wasm guest seccomp filter: {0}")]
    Install(String),
}

/// Compiles the guest profile for this machine's architecture.
pub fn guest_filter() -> Result<BpfProgram, SeccompError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SeccompError::Compile(format!("{e:?}")))?;
    let mut filters = seccompiler::compile_from_json(PROFILE.as_bytes(), arch)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    filters
        .remove(FILTER)
        .ok_or_else(|| SeccompError::Compile(format!("no `{FILTER}` filter in the profile")))
}

/// Installs `filter` on the calling thread and threads it creates later.
pub fn install(filter: &BpfProgram) -> Result<(), SeccompError> {
    // Unprivileged filter installation requires no_new_privs; a wasm guest never execs anyway.
    // SAFETY: prctl on our own process.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SeccompError::Install(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    seccompiler::apply_filter(filter).map_err(|e| SeccompError::Install(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const CHILD_ENV: &str = "WASMPOD_SECCOMP_TEST_CHILD";

    /// Runs in a child process (filters cannot be removed): exec must fail with EPERM,
    /// ordinary file I/O must still work.
    #[test]
    fn guest_filter_blocks_exec_but_not_io() {
        if std::env::var_os(CHILD_ENV).is_some() {
            install(&guest_filter().unwrap()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("f"), b"ok").unwrap();
            assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"ok");
            let err = Command::new("/bin/true").status().unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([
                "--exact",
                "seccomp::tests::guest_filter_blocks_exec_but_not_io",
                "--nocapture",
            ])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "child failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    }
}
