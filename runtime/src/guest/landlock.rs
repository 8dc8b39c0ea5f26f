//! Landlock: guest code cannot open procfs, sysfs or device nodes of the container.
//!
//! Landlock rules grant rights on a file hierarchy and there are no negative rules, so a rule
//! on `/` would grant `/proc` too. The ruleset handles every filesystem right and grants:
//! - everything on each top-level entry of `/` that is a real directory or regular file,
//!   except `proc`, `sys`, `dev` and any entry that is a procfs/sysfs-like mount. Top-level
//!   symlinks get no rule (an image could ship `/myproc -> /proc`); what they point to is
//!   still reachable when it lies in a granted tree (`/lib -> usr/lib`), since Landlock checks
//!   the resolved path;
//! - on `/dev`, only reading and writing the usual character devices (`null zero full random
//!   urandom tty`), plus `/dev/shm` and the regular files bind-mounted there
//!   (`/dev/termination-log`);
//! - nothing on `/` itself: `READ_DIR` there would let the guest list `/proc/self/fd`, and
//!   file rights would reach `/proc/self/mem`.
//!
//! With `wasmpod.io/preopens` (other than `/`), the top-level entries are replaced by the
//! preopened directories (read rights only for `:ro` ones) and `/etc` read-only, which the
//! engine itself reads (name lookup, TLS roots): the engine confines the guest to its preopens,
//! and Landlock confines the whole process, in case the engine has a path bug.
//!
//! Limits, by design: the guest cannot list `/` nor create entries directly in `/`; a volume
//! mounted on a top-level path is reachable, a procfs mounted deeper (e.g. a host path volume
//! holding one) is not recognised; descriptors opened before the ruleset (stdio, the engine's
//! preopens, which are `O_PATH`) keep working.

use std::io;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetError, RulesetStatus, ABI,
};

use crate::grants::Preopen;

/// The newest ABI this code knows the rights of; older kernels get what they support.
const ABI_WANTED: ABI = ABI::V7;
/// Character devices a guest may read and write.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Top-level names never granted, whatever they are.
const NEVER: &[&str] = &["proc", "sys", "dev"];
/// `statfs` magics of kernel-state filesystems: procfs, sysfs, debugfs, tracefs,
/// securityfs, cgroup v1 and v2, bpffs, devpts, mqueue.
const KERNEL_FS_MAGICS: &[i64] = &[
    0x9fa0,
    0x6265_6572,
    0x6462_6720,
    0x7472_6163,
    0x7363_6673,
    0x0027_e0eb,
    0x6367_7270,
    0xcafe_4a11,
    0x1cd1,
    0x1980_0202,
];

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("Landlock is refused by the container's seccomp profile ({0}): refusing to run a guest that could open /proc/self/mem")]
    Blocked(io::Error),
    #[error("listing / for the Landlock ruleset: {0}")]
    ListRoot(io::Error),
    #[error("Landlock ruleset: {0}")]
    Ruleset(#[from] RulesetError),
}

/// What [`restrict`] achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Enforced,
    /// The kernel has no Landlock (or it is disabled): nothing was restricted.
    Unsupported,
}

/// Restricts this process (and what it will start) to the rules above. Must run after the
/// container's root is in place and before guest code.
pub fn restrict(preopens: Option<&[Preopen]>) -> Result<Outcome, LandlockError> {
    if !kernel_supports_landlock()? {
        return Ok(Outcome::Unsupported);
    }
    let all = AccessFs::from_all(ABI_WANTED);
    let mut ruleset = Ruleset::default().handle_access(all)?.create()?;
    for (path, access) in rules(all, preopens)? {
        // An entry that vanished or cannot be opened gets no rule: that only takes rights away.
        if let Ok(fd) = PathFd::new(&path) {
            ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
        }
    }
    let status = ruleset.restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::NotEnforced => Outcome::Unsupported,
        _ => Outcome::Enforced,
    })
}

/// True when the kernel has Landlock. Only ENOSYS and EOPNOTSUPP mean it has not; any other
/// error comes from a seccomp filter and is refused rather than taken for "unsupported".
fn kernel_supports_landlock() -> Result<bool, LandlockError> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no attribute pointer.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi >= 1 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(LandlockError::Blocked(error)),
    }
}

type Rules = Vec<(PathBuf, BitFlags<AccessFs>)>;

/// The paths to grant and the rights on each.
fn rules(all: BitFlags<AccessFs>, preopens: Option<&[Preopen]>) -> Result<Rules, LandlockError> {
    let file_rights = all & AccessFs::from_file(ABI_WANTED);
    let mut rules = match preopens.filter(|p| !p.iter().any(|p| p.path == Path::new("/"))) {
        Some(preopens) => preopen_rules(all, preopens),
        None => top_level_rules(all, file_rights)?,
    };
    rules.extend(dev_rules(Path::new("/dev"), all, file_rights));
    Ok(rules)
}

/// Each preopen (read rights only when `:ro`) and `/etc` read-only.
fn preopen_rules(all: BitFlags<AccessFs>, preopens: &[Preopen]) -> Rules {
    let read = all & AccessFs::from_read(ABI_WANTED);
    let mut rules: Rules = preopens
        .iter()
        .filter(|p| !is_kernel_fs(&p.path))
        .map(|p| (p.path.clone(), if p.writable { all } else { read }))
        .collect();
    rules.push((PathBuf::from("/etc"), read));
    rules
}

/// Every top-level entry but the kernel's.
fn top_level_rules(
    all: BitFlags<AccessFs>,
    file_rights: BitFlags<AccessFs>,
) -> Result<Rules, LandlockError> {
    let mut rules = Vec::new();
    for entry in std::fs::read_dir("/").map_err(LandlockError::ListRoot)? {
        let entry = entry.map_err(LandlockError::ListRoot)?;
        let path = entry.path();
        let name = entry.file_name();
        if NEVER.iter().any(|n| name == *n) {
            continue;
        }
        // DirEntry::file_type does not follow symlinks.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && !is_kernel_fs(&path) {
            rules.push((path, all));
        } else if kind.is_file() {
            rules.push((path, file_rights));
        }
    }
    Ok(rules)
}

fn dev_rules(dev: &Path, all: BitFlags<AccessFs>, file_rights: BitFlags<AccessFs>) -> Rules {
    use std::os::unix::fs::FileTypeExt;
    let device_rights = file_rights & !AccessFs::Execute;
    let mut rules = Vec::new();
    let Ok(entries) = std::fs::read_dir(dev) else {
        return rules;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if kind.is_char_device() && DEVICES.iter().any(|d| name == *d) {
            rules.push((path, device_rights));
        } else if kind.is_dir() && name == "shm" && !is_kernel_fs(&path) {
            rules.push((path, all));
        } else if kind.is_file() {
            rules.push((path, device_rights));
        }
    }
    rules
}

fn is_kernel_fs(path: &Path) -> bool {
    match nix::sys::statfs::statfs(path) {
        Ok(fs) => KERNEL_FS_MAGICS.contains(&fs.filesystem_type().0),
        // Unknown: grant nothing.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_and_sys_are_kernel_filesystems_and_tmp_is_not() {
        assert!(is_kernel_fs(Path::new("/proc")));
        assert!(is_kernel_fs(Path::new("/sys")));
        assert!(!is_kernel_fs(Path::new("/tmp")));
    }

    #[test]
    fn no_rule_reaches_proc_sys_or_a_top_level_symlink() {
        let all = AccessFs::from_all(ABI_WANTED);
        let rules = rules(all, None).unwrap();
        for (path, _) in &rules {
            assert!(
                !path.starts_with("/proc") && !path.starts_with("/sys"),
                "{path:?}"
            );
            let meta = std::fs::symlink_metadata(path).unwrap();
            assert!(!meta.file_type().is_symlink(), "{path:?}");
        }
        assert!(!rules
            .iter()
            .any(|(p, _)| p == Path::new("/") || p == Path::new("/dev")));
    }

    /// In a forked child: the ruleset really is enforced on this kernel.
    #[test]
    fn procfs_is_refused_and_granted_trees_are_not() {
        // SAFETY: the child ends with _exit and never returns into the harness.
        match unsafe { libc::fork() } {
            0 => {
                let code = match restrict(None) {
                    Ok(Outcome::Enforced) => {
                        let refused = |e: io::Error| e.raw_os_error() == Some(libc::EACCES);
                        let checks = [
                            std::fs::read("/proc/self/maps").map_err(refused).err() == Some(true),
                            std::fs::read_dir("/proc/self/fd").map_err(refused).err() == Some(true),
                            std::fs::OpenOptions::new()
                                .write(true)
                                .open("/proc/self/mem")
                                .map_err(refused)
                                .err()
                                == Some(true),
                            std::fs::read_dir("/sys").map_err(refused).err() == Some(true),
                            std::fs::read_dir("/").is_err(),
                            std::fs::read("/etc/passwd").is_ok(),
                            std::fs::read_dir("/etc").is_ok(),
                            std::fs::write("/dev/null", b"x").is_ok(),
                        ];
                        checks
                            .iter()
                            .position(|ok| !ok)
                            .map_or(0, |i| 10 + i as i32)
                    }
                    Ok(Outcome::Unsupported) => 2,
                    Err(_) => 3,
                };
                // SAFETY: leaving the forked child without unwinding.
                unsafe { libc::_exit(code) }
            }
            pid => {
                assert!(pid > 0);
                let mut status = 0;
                // SAFETY: waiting for our own child.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                assert!(libc::WIFEXITED(status));
                assert_eq!(libc::WEXITSTATUS(status), 0, "10+n: check n failed");
            }
        }
    }

    /// In a forked child: with preopens, only they (read-only for `:ro`) and `/etc` are open.
    #[test]
    fn preopens_replace_the_top_level_entries() {
        let ro = tempfile::tempdir().unwrap();
        let rw = tempfile::tempdir().unwrap();
        std::fs::write(ro.path().join("f"), "x").unwrap();
        let preopens = [
            Preopen {
                path: ro.path().to_path_buf(),
                writable: false,
            },
            Preopen {
                path: rw.path().to_path_buf(),
                writable: true,
            },
        ];
        // SAFETY: the child ends with _exit and never returns into the harness.
        match unsafe { libc::fork() } {
            0 => {
                let code = match restrict(Some(&preopens)) {
                    Ok(Outcome::Enforced) => {
                        let refused = |r: io::Result<()>| {
                            r.is_err_and(|e| e.raw_os_error() == Some(libc::EACCES))
                        };
                        let checks = [
                            std::fs::read(ro.path().join("f")).is_ok(),
                            refused(std::fs::write(ro.path().join("g"), "y")),
                            std::fs::write(rw.path().join("g"), "y").is_ok(),
                            std::fs::read("/etc/passwd").is_ok(),
                            refused(std::fs::write("/etc/wasmpod-landlock-test", "y")),
                            refused(std::fs::read("/usr/bin/env").map(drop)),
                            refused(std::fs::read("/proc/self/maps").map(drop)),
                        ];
                        checks
                            .iter()
                            .position(|ok| !ok)
                            .map_or(0, |i| 10 + i as i32)
                    }
                    Ok(Outcome::Unsupported) => 2,
                    Err(_) => 3,
                };
                // SAFETY: leaving the forked child without unwinding.
                unsafe { libc::_exit(code) }
            }
            pid => {
                assert!(pid > 0);
                let mut status = 0;
                // SAFETY: waiting for our own child.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                assert!(libc::WIFEXITED(status));
                assert_eq!(libc::WEXITSTATUS(status), 0, "10+n: check n failed");
            }
        }
    }

    #[test]
    fn only_the_usual_devices_are_granted_in_dev() {
        let all = AccessFs::from_all(ABI_WANTED);
        let files = all & AccessFs::from_file(ABI_WANTED);
        let rules = dev_rules(Path::new("/dev"), all, files);
        for (path, access) in &rules {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(path).unwrap();
            if meta.is_dir() {
                assert_eq!(name, "shm");
            } else if !meta.is_file() {
                assert!(DEVICES.contains(&name.as_str()), "{path:?}");
                assert!(!access.contains(AccessFs::Execute));
            }
        }
        assert!(rules.iter().any(|(p, _)| p == Path::new("/dev/null")));
        assert!(!rules.iter().any(|(p, _)| p == Path::new("/dev/mem")));
    }
}
