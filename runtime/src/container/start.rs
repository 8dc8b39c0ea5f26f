use std::path::Path;

use super::{lc, load, LifecycleError};

/// Releases the container's init process, which then runs the workload.
pub fn start(root: &Path, id: &str) -> Result<(), LifecycleError> {
    load(root, id)?.start().map_err(lc(id))
}
