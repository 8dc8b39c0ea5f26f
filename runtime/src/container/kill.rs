use std::path::Path;

use libcgroups::common::{CgroupManager, FreezerState};
use libcontainer::container::ContainerStatus;
use libcontainer::signal::Signal;

use super::{cgroup_error, cgroup_manager, lc, load, LifecycleError};

/// Sends `signal` to the init process, or to every process of the container when `all`.
/// A paused container stays paused unless the signal is SIGKILL.
pub fn kill(root: &Path, id: &str, signal: u32, all: bool) -> Result<(), LifecycleError> {
    let sigkill = signal == libc::SIGKILL as u32;
    let signal = Signal::try_from(signal as i32).map_err(|e| LifecycleError::Signal {
        id: id.to_string(),
        reason: e.to_string(),
    })?;
    let mut container = load(root, id)?;
    let was_paused = container.status() == ContainerStatus::Paused;
    container.kill(signal, all).map_err(lc(id))?;
    if was_paused && !sigkill {
        // libcontainer records every signalled container as Stopped, and `all` thaws the
        // cgroup it froze to deliver the signal: put both back, so that a later SIGKILL thaws
        // it and Resume finds it paused.
        if all {
            cgroup_manager(&container, id)?
                .freeze(FreezerState::Frozen)
                .map_err(|e| cgroup_error(id, e))?;
        }
        container
            .set_status(ContainerStatus::Paused)
            .save()
            .map_err(lc(id))?;
    }
    Ok(())
}
