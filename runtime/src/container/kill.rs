use std::path::Path;

use libcontainer::signal::Signal;

use super::{lc, load, LifecycleError};

/// Sends `signal` to the init process, or to every process of the container when `all`.
pub fn kill(root: &Path, id: &str, signal: u32, all: bool) -> Result<(), LifecycleError> {
    let signal = Signal::try_from(signal as i32).map_err(|e| LifecycleError::Signal {
        id: id.to_string(),
        reason: e.to_string(),
    })?;
    load(root, id)?.kill(signal, all).map_err(lc(id))
}
