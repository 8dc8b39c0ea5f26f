use std::path::Path;

use libcontainer::signal::Signal;

use super::{load, LifecycleError};

/// Kills whatever still runs in the container and removes its cgroup and state.
/// A container that does not exist (anymore) is not an error.
pub fn delete(root: &Path, id: &str) -> Result<(), LifecycleError> {
    let mut container = match load(root, id) {
        Ok(c) => c,
        Err(LifecycleError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Ok(sig) = Signal::try_from(libc::SIGKILL) {
        if let Err(e) = container.kill(sig, true) {
            tracing::debug!(id, error = %e, "kill before delete");
        }
    }
    let result = container.delete(true).map_err(super::lc(id));
    // delete() leaves the directory behind when it fails half-way; the next attempt must not
    // trip over a stale state.json.
    let dir = root.join(id);
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(id, dir = %dir.display(), error = %e, "removing container state");
        }
    }
    result
}
