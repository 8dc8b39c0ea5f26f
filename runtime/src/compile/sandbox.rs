//! What the compile process does to itself before it reads a byte of the module: join the
//! node's compile cgroup, die with its shim, drop to an unprivileged user (which clears every
//! capability), and install the compiler's seccomp filter.

use std::path::PathBuf;

use seccompiler::{BpfProgram, TargetArch};

use super::cgroup;

// A symlink to the repository's `seccomp-profiles/compiler.json` (see `crate::seccomp`).
const PROFILE: &str = include_str!("../../seccomp-profiles/compiler.json");
const FILTER: &str = "wasm_compiler";
/// `nobody`: owns nothing on the node.
const UNPRIVILEGED: libc::uid_t = 65534;
/// Descriptors the compiler needs: stdio and a few its threads may open (`/proc/self/...`).
const MAX_FILES: libc::rlim_t = 64;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("compiler seccomp profile: {0}")]
    Seccomp(String),
}

fn check(what: &'static str, result: libc::c_int) -> Result<(), SandboxError> {
    if result == 0 {
        return Ok(());
    }
    Err(SandboxError::Sys {
        what,
        source: std::io::Error::last_os_error(),
    })
}

/// Compiles the filter for this architecture.
pub fn filter() -> Result<BpfProgram, SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::Seccomp(format!("{e:?}")))?;
    let mut filters = seccompiler::compile_from_json(PROFILE.as_bytes(), arch)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    filters
        .remove(FILTER)
        .ok_or_else(|| SandboxError::Seccomp(format!("no `{FILTER}` filter in the profile")))
}

/// Confines the calling (single-threaded, freshly executed) process.
pub fn enter(cgroup_procs: &[PathBuf]) -> Result<(), SandboxError> {
    cgroup::join(cgroup_procs)?;
    let filter = filter()?;
    // SAFETY: plain syscalls on our own process, which has one thread.
    unsafe {
        check(
            "PR_SET_PDEATHSIG",
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL),
        )?;
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        check("RLIMIT_CORE", libc::setrlimit(libc::RLIMIT_CORE, &no_core))?;
        let files = libc::rlimit {
            rlim_cur: MAX_FILES,
            rlim_max: MAX_FILES,
        };
        check(
            "RLIMIT_NOFILE",
            libc::setrlimit(libc::RLIMIT_NOFILE, &files),
        )?;
        check("setgroups", libc::setgroups(0, std::ptr::null()))?;
        check(
            "setresgid",
            libc::setresgid(UNPRIVILEGED, UNPRIVILEGED, UNPRIVILEGED),
        )?;
        check(
            "setresuid",
            libc::setresuid(UNPRIVILEGED, UNPRIVILEGED, UNPRIVILEGED),
        )?;
        check(
            "PR_SET_NO_NEW_PRIVS",
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        )?;
        // A uid change clears the effective and permitted sets, not the ambient or bounding
        // ones; make sure nothing is left.
        check(
            "PR_CAP_AMBIENT_CLEAR_ALL",
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            ),
        )?;
    }
    if capabilities_left() {
        return Err(SandboxError::Sys {
            what: "dropping capabilities",
            source: std::io::Error::other("capabilities remain after the uid change"),
        });
    }
    seccompiler::apply_filter(&filter).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

/// Whether any effective or permitted capability remains (`/proc/self/status`).
fn capabilities_left() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().any(|line| {
        ["CapEff:", "CapPrm:"].iter().any(|key| {
            line.strip_prefix(key)
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
                .is_some_and(|caps| caps != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_compiler_profile_compiles_for_this_architecture() {
        super::filter().unwrap();
    }
}
