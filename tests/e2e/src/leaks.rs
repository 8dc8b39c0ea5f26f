//! Leak checks a test runs after it deleted a container: processes, cgroups, mounts, sockets.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

use crate::containerd::NAMESPACES;
use crate::mounts;

/// Where containerd 1.6 shims put their sockets, whatever the daemon's state directory.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Controller directory plus three levels below it (e.g. `memory/default/<id>`).
const CGROUP_DEPTH: usize = 4;

/// Calls `check` every 50 ms until it returns true (→ true) or `timeout` passes (→ false).
#[must_use = "a wait that timed out must be reported"]
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Calls `probe` every 50 ms until it finds a value. After `timeout` it fails naming `what`
/// it waited for and the last error the probe gave, if any.
pub fn poll<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let mut found = None;
    let mut last_error = None;
    let _ = wait_until(timeout, || match probe() {
        Ok(value) => {
            last_error = None;
            found = value;
            found.is_some()
        }
        Err(e) => {
            last_error = Some(e);
            false
        }
    });
    match (found, last_error) {
        (Some(value), _) => Ok(value),
        (None, Some(e)) => Err(e.context(format!("waited {timeout:?} for {what}"))),
        (None, None) => bail!("waited {timeout:?} for {what}; it never came"),
    }
}

/// Pids (other than this process) whose command line, arguments joined by spaces, contains
/// `substr`.
pub fn processes_matching(substr: &str) -> Vec<u32> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| cmdline(pid).is_some_and(|c| c.contains(substr)))
        .collect()
}

/// Pids whose executable's file name is `name` (from `/proc/PID/exe`, else argv\[0\]).
pub fn pids_of_exe(name: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| exe_name(pid).as_deref() == Some(name))
        .collect()
}

/// The command line of `pid`, arguments joined by spaces (None when it has gone away).
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

/// The file name of the executable of `pid`.
pub fn exe_name(pid: u32) -> Option<String> {
    if let Ok(target) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        let name = target.file_name()?.to_string_lossy().into_owned();
        return Some(name.trim_end_matches(" (deleted)").to_string());
    }
    let line = cmdline(pid)?;
    let argv0 = line.split(' ').next()?;
    Some(Path::new(argv0).file_name()?.to_string_lossy().into_owned())
}

fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every cgroup directory named `id` under `/sys/fs/cgroup` (v1 controllers, `unified`, or
/// a pure v2 tree), at most three levels below a controller, e.g. `memory/default/<id>`.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk_cgroups(Path::new(CGROUP_ROOT), id, CGROUP_DEPTH, &mut found);
    found.sort();
    found
}

fn walk_cgroups(dir: &Path, id: &str, depth: usize, found: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // Symlinks (e.g. `cpu -> cpu,cpuacct`) point at directories that are walked anyway.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if entry.file_name() == id {
            found.push(path.clone());
        }
        walk_cgroups(&path, id, depth - 1, found);
    }
}

/// The lines of `/proc/self/mountinfo` that contain `substr` (mount point, source or options).
pub fn mounts_containing(substr: &str) -> Vec<String> {
    mounts::mounts()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.line.contains(substr) || m.mount_point.to_string_lossy().contains(substr))
        .map(|m| m.line)
        .collect()
}

/// Every entry of `/run/containerd/s/` (sockets of all shims on the host, of any containerd).
pub fn shim_sockets() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(SHIM_SOCKET_DIR) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    found.sort();
    found
}

/// The socket a containerd 1.6 shim for (`address`, `namespace`, `id`) listens on:
/// `/run/containerd/s/<sha256 of "ADDRESS/NAMESPACE/ID">`.
pub fn shim_socket_for(address: &Path, namespace: &str, id: &str) -> PathBuf {
    let key = address.join(namespace).join(id);
    let digest = Sha256::digest(key.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Path::new(SHIM_SOCKET_DIR).join(hex)
}

/// Everything still left behind by container `id` of the containerd at `address` (shim
/// sockets in every namespace the suite uses), one description per leak; empty when clean.
pub fn leaks_for(address: &Path, id: &str) -> Vec<String> {
    let mut leaks = Vec::new();
    for pid in processes_matching(id) {
        let cmd = cmdline(pid).unwrap_or_default();
        leaks.push(format!("process {pid}: {cmd}"));
    }
    for dir in cgroup_dirs(id) {
        leaks.push(format!("cgroup {}", dir.display()));
    }
    for line in mounts_containing(id) {
        leaks.push(format!("mount {line}"));
    }
    for namespace in NAMESPACES {
        let socket = shim_socket_for(address, namespace, id);
        if socket.exists() {
            leaks.push(format!("shim socket {} ({namespace})", socket.display()));
        }
    }
    leaks
}

/// Waits up to `timeout` for [`leaks_for`] to come back empty; fails listing what is left.
pub fn assert_no_leaks(address: &Path, id: &str, timeout: Duration) -> Result<()> {
    let mut leaks = Vec::new();
    let clean = wait_until(timeout, || {
        leaks = leaks_for(address, id);
        leaks.is_empty()
    });
    if !clean {
        bail!("container {id} left behind:\n  {}", leaks.join("\n  "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_by_exe_but_not_by_cmdline() {
        let me = std::process::id();
        let name = exe_name(me).unwrap();
        assert!(pids_of_exe(&name).contains(&me));
        assert!(!processes_matching(&name).contains(&me));
    }

    #[test]
    fn socket_name_is_a_sha256() {
        let path = shim_socket_for(Path::new("/tmp/b/containerd.sock"), "default", "x");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 64);
        assert!(path.starts_with(SHIM_SOCKET_DIR));
    }

    #[test]
    fn poll_names_what_never_came_and_the_last_error() {
        let timeout = Duration::from_millis(100);
        let err = poll::<u32>(timeout, "the answer", || Ok(None)).unwrap_err();
        assert!(
            format!("{err:#}").contains("the answer; it never came"),
            "{err:#}"
        );
        let err = poll::<u32>(timeout, "the answer", || bail!("no socket")).unwrap_err();
        assert!(
            format!("{err:#}").contains("the answer: no socket"),
            "{err:#}"
        );
        let mut calls = 0;
        let value = poll(timeout, "the answer", || {
            calls += 1;
            Ok((calls > 2).then_some(42))
        });
        assert_eq!(value.unwrap(), 42);
    }

    #[test]
    fn wait_until_times_out() {
        assert!(!wait_until(Duration::from_millis(100), || false));
        assert!(wait_until(Duration::from_millis(100), || true));
    }
}
