use std::path::Path;

use super::{lc, load, LifecycleError};

/// Freezes every process of a running container (cgroup v1 freezer / v2 `cgroup.freeze`).
/// libcontainer records `Paused`, so a later SIGKILL thaws the cgroup (v1) and ends it.
pub fn pause(root: &Path, id: &str) -> Result<(), LifecycleError> {
    load(root, id)?.pause().map_err(lc(id))
}

/// Thaws a paused container.
pub fn resume(root: &Path, id: &str) -> Result<(), LifecycleError> {
    load(root, id)?.resume().map_err(lc(id))
}
