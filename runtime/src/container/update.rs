use std::path::Path;

use libcgroups::common::{CgroupManager, ControllerOpt};
use oci_spec::runtime::LinuxResources;

use super::{cgroup_error, cgroup_manager, load, LifecycleError};

/// Applies new cgroup limits (memory, CPU, pids, block I/O, hugepages) to a running container.
/// Device rules are left as they are: like runc, an update does not change device access.
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<(), LifecycleError> {
    let mut resources = resources.clone();
    resources.set_devices(None);
    let manager = cgroup_manager(&*load(root, id)?, id)?;
    manager
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| cgroup_error(id, e))
}
