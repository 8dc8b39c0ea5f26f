//! Container lifecycle verbs on top of libcontainer, one file each. State lives in
//! libcontainer's root (`<root>/<id>`), so a fresh process (the shim's `delete` action after the
//! shim was killed) can find and clean up what a running shim created.

mod create;
mod delete;
mod exec;
mod kill;
mod oom;
mod pause;
mod prepare;
mod start;
mod stats;
mod update;

use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::error::LibcontainerError;

pub use create::{create, CreateError, CreateOptions, Created};
pub use delete::delete;
pub use exec::{exec, ExecOptions};
pub use kill::kill;
pub use oom::{memory_cgroup, oom_kills};
pub use pause::{pause, resume};
pub use prepare::Preparer;
pub use start::start;
pub use stats::{pids, stats};
pub use update::update;

/// Default root for libcontainer state: `<DEFAULT_STATE_ROOT>/<containerd namespace>`.
/// Kept short: libcontainer puts a unix socket under `<root>/<id>/`, and socket paths are
/// limited to 108 bytes even with 64-character CRI ids.
pub const DEFAULT_STATE_ROOT: &str = "/run/wasmpod";

/// libcontainer's state root for a containerd namespace.
pub fn state_root(namespace: &str) -> PathBuf {
    Path::new(DEFAULT_STATE_ROOT).join(namespace)
}

/// Why a lifecycle verb on an existing container failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages show
pub enum LifecycleError {
    /// No such container in the state root.
    #[error("container {id} not found")]
    NotFound { id: String },
    /// libcontainer failed.
    #[error("container {id}: {source}")]
    Libcontainer {
        id: String,
        source: Box<LibcontainerError>,
    },
    /// A signal number the kernel does not know.
    #[error("container {id}: bad signal: {reason}")]
    Signal { id: String, reason: String },
    /// The container's cgroup could not be read or changed.
    #[error("container {id} cgroup: {reason}")]
    Cgroup { id: String, reason: String },
    #[error("container {id} state: {reason}")]
    State { id: String, reason: String },
}

impl LifecycleError {
    /// How the shim reports this failure: an unknown container, a container in the wrong
    /// state (libcontainer's classification), a bad signal, or the node's failure.
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            Self::NotFound { .. } => crate::ErrorKind::NotFound,
            Self::Libcontainer { source, .. } => match crate::ErrorKind::of_libcontainer(source) {
                // A state directory that vanished under us is the node's problem here.
                crate::ErrorKind::FailedPrecondition => crate::ErrorKind::FailedPrecondition,
                _ => crate::ErrorKind::Internal,
            },
            Self::Signal { .. } => crate::ErrorKind::InvalidArgument,
            Self::Cgroup { .. } | Self::State { .. } => crate::ErrorKind::Internal,
        }
    }
}

fn lc(id: &str) -> impl FnOnce(LibcontainerError) -> LifecycleError + '_ {
    move |source| LifecycleError::Libcontainer {
        id: id.to_string(),
        source: Box::new(source),
    }
}

/// The cgroup manager of a loaded container (v1, hybrid or v2; cgroupfs or systemd).
fn cgroup_manager(
    container: &Container,
    id: &str,
) -> Result<libcgroups::common::AnyCgroupManager, LifecycleError> {
    let config = container.spec().map_err(lc(id))?;
    libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: id.to_string(),
    })
    .map_err(|e| cgroup_error(id, e))
}

fn cgroup_error(id: &str, e: impl std::fmt::Display) -> LifecycleError {
    LifecycleError::Cgroup {
        id: id.to_string(),
        reason: e.to_string(),
    }
}

/// A loaded container, with its state lock held until it is dropped.
///
/// libcontainer rewrites `state.json` in place (truncate, then write), so a load that races a
/// save (a Kill while a Delete or a Pause saves) can read a half-written file ("failed to
/// parse container state file"). Every verb holds an exclusive `flock` on the container's
/// lock file from its load to its last save. The lock is per open file description, so it
/// excludes threads of one shim as well as other processes (the shim's `delete` action).
struct Loaded {
    container: Container,
    _lock: std::fs::File,
}

impl std::ops::Deref for Loaded {
    type Target = Container;

    fn deref(&self) -> &Container {
        &self.container
    }
}

impl std::ops::DerefMut for Loaded {
    fn deref_mut(&mut self) -> &mut Container {
        &mut self.container
    }
}

/// The lock file, inside the state directory: it goes with the directory on delete.
const STATE_LOCK: &str = "wasmpod.lock";

fn load(root: &Path, id: &str) -> Result<Loaded, LifecycleError> {
    let dir = root.join(id);
    if !dir.join("state.json").exists() {
        return Err(LifecycleError::NotFound { id: id.to_string() });
    }
    let lock = lock_state(&dir).map_err(|e| LifecycleError::State {
        id: id.to_string(),
        reason: format!("locking {}: {e}", dir.join(STATE_LOCK).display()),
    })?;
    // Deleted while we waited for the lock.
    if !dir.join("state.json").exists() {
        return Err(LifecycleError::NotFound { id: id.to_string() });
    }
    let container = Container::load(dir).map_err(lc(id))?;
    Ok(Loaded {
        container,
        _lock: lock,
    })
}

fn lock_state(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(dir.join(STATE_LOCK))?;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
