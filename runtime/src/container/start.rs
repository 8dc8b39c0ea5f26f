use std::path::Path;
use std::sync::Mutex;

use super::{lc, load, LifecycleError};

/// libcontainer's start reaches the container's `notify.sock` by `chdir`ing into its state
/// directory (socket paths are limited to 108 bytes) and back. The working directory is
/// per-process: two concurrent starts in one multi-threaded process could connect to each
/// other's socket or return to a deleted directory. One start at a time; each takes
/// milliseconds.
static START: Mutex<()> = Mutex::new(());

/// Releases the container's init process, which then runs the workload.
pub fn start(root: &Path, id: &str) -> Result<(), LifecycleError> {
    let mut container = load(root, id)?;
    let _one_at_a_time = START.lock().unwrap_or_else(|p| p.into_inner());
    container.start().map_err(lc(id))
}
