//! wasmpod's own seccomp profile for wasm guests (`seccomp-profiles/wasm-guest.json`), on top of
//! the spec's filter: an allow-list of the syscalls the engines make while running guests
//! (measured, see `seccomp-profiles/README.md`); everything else fails with EPERM.
//!
//! The profile is seccompiler's JSON with one extension: a rule may carry `"arch": [..]`, the
//! architectures it applies to (syscalls that exist on some only, such as x86_64's `open`).
//! In front of seccompiler's program sits a short prefix that makes `clone3` fail with ENOSYS:
//! its flags are behind a pointer a filter cannot read, and ENOSYS (unlike EPERM) makes glibc
//! and Rust fall back to `clone`, whose namespace flags the profile does check.

use seccompiler::{sock_filter, BpfProgram, TargetArch};
use serde_json::Value;

#[doc(hidden)]
pub mod testkit;

// `runtime/seccomp-profiles/` holds symlinks to the repository's `seccomp-profiles/`, so that
// `cargo package` puts the profiles into the crate.
const PROFILE: &str = include_str!("../seccomp-profiles/wasm-guest.json");
const FILTER: &str = "wasm_guest";
/// The profile's extension: architectures a rule applies to.
const ARCH_KEY: &str = "arch";
/// Architectures seccompiler compiles for; every one must accept the profile.
pub const ARCHES: [&str; 3] = ["x86_64", "aarch64", "riscv64"];

/// Set to `1` in a debug build's environment to make the filter log every syscall the profile
/// does not list instead of refusing it (kernel audit lines `type=1326`): how the list is
/// measured. Release builds ignore it.
pub const LOG_MODE_ENV: &str = "WASMPOD_SECCOMP_LOG";

/// What a syscall outside the list gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// EPERM (the profile's `mismatch_action`).
    Enforce,
    /// Allowed and logged by the kernel: for measuring the list.
    Log,
}

/// wasmpod's guest profile could not be compiled or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile does not compile for this architecture.
    #[error("wasm guest seccomp profile: {0}")]
    Compile(String),
    /// seccomp(2) refused the filter.
    #[error("installing the wasm guest seccomp filter: {0}")]
    Install(String),
}

/// Compiles the guest profile for this machine's architecture, in the mode [`LOG_MODE_ENV`]
/// asks for.
pub fn guest_filter() -> Result<BpfProgram, SeccompError> {
    let log = std::env::var_os(LOG_MODE_ENV).is_some_and(|v| v == "1");
    let mode = if log && cfg!(debug_assertions) {
        tracing::warn!("{LOG_MODE_ENV}=1: the wasm guest seccomp filter only logs");
        Mode::Log
    } else {
        if log {
            tracing::warn!("{LOG_MODE_ENV} is ignored in release builds");
        }
        Mode::Enforce
    };
    compile(std::env::consts::ARCH, mode)
}

/// Compiles the guest profile for `arch` (one of [`ARCHES`]).
pub fn compile(arch: &str, mode: Mode) -> Result<BpfProgram, SeccompError> {
    let target = TargetArch::try_from(arch).map_err(|e| SeccompError::Compile(format!("{e:?}")))?;
    let json = profile_for(PROFILE, arch, mode)?;
    let mut filters = seccompiler::compile_from_json(json.as_bytes(), target)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    let main = filters
        .remove(FILTER)
        .ok_or_else(|| SeccompError::Compile(format!("no `{FILTER}` filter in the profile")))?;
    let mut program = clone3_enosys_prefix(audit_arch(arch)?);
    program.extend(main);
    Ok(program)
}

/// The profile as seccompiler JSON for `arch`: rules for other architectures dropped, the
/// `arch` keys removed, and in [`Mode::Log`] the mismatch action replaced by `log`.
fn profile_for(text: &str, arch: &str, mode: Mode) -> Result<String, SeccompError> {
    let bad = |why: String| SeccompError::Compile(why);
    let mut profile: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let filter = profile
        .get_mut(FILTER)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad(format!("no `{FILTER}` filter in the profile")))?;
    if mode == Mode::Log {
        filter.insert("mismatch_action".into(), Value::String("log".into()));
    }
    let rules = filter
        .get_mut("filter")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("`filter` is not a list of rules".into()))?;
    let mut kept = Vec::with_capacity(rules.len());
    for mut rule in rules.drain(..) {
        let shown = rule.to_string();
        let object = rule
            .as_object_mut()
            .ok_or_else(|| bad(format!("a rule is not an object: {shown}")))?;
        if let Some(arches) = object.remove(ARCH_KEY) {
            let arches = arches
                .as_array()
                .filter(|list| {
                    list.iter()
                        .all(|a| a.as_str().is_some_and(|a| ARCHES.contains(&a)))
                })
                .ok_or_else(|| {
                    bad(format!(
                        "`{ARCH_KEY}` of {} must list some of {ARCHES:?}, got {arches}",
                        object.get("syscall").unwrap_or(&Value::Null)
                    ))
                })?;
            if !arches.iter().any(|a| a == arch) {
                continue;
            }
        }
        kept.push(rule);
    }
    *rules = kept;
    Ok(profile.to_string())
}

/// `AUDIT_ARCH_*` of `arch` (linux/audit.h): 64-bit little-endian ELF machines.
fn audit_arch(arch: &str) -> Result<u32, SeccompError> {
    const LE_64: u32 = 0x8000_0000 | 0x4000_0000;
    match arch {
        "x86_64" => Ok(62 | LE_64),
        "aarch64" => Ok(183 | LE_64),
        "riscv64" => Ok(243 | LE_64),
        _ => Err(SeccompError::Compile(format!("unsupported arch {arch}"))),
    }
}

/// `clone3`'s number on every architecture wasmpod compiles for (the unified table).
const SYS_CLONE3: u32 = 435;
// Classic BPF opcodes (linux/bpf_common.h): BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K,
// BPF_RET|BPF_K.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;

/// For the native ABI, `clone3` returns ENOSYS; anything else falls through to the next
/// instruction (seccompiler's program, which starts again with its own architecture check).
fn clone3_enosys_prefix(audit_arch: u32) -> BpfProgram {
    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        // Another ABI: skip the next 3 (to seccompiler's program).
        insn(BPF_JEQ_K, 0, 3, audit_arch),
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        insn(BPF_JEQ_K, 0, 1, SYS_CLONE3),
        insn(
            BPF_RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
    ]
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
mod tests;
