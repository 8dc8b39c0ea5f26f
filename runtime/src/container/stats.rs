use std::path::Path;

use libcgroups::common::{create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager};
use libcgroups::stats::Stats;

use super::{lc, load, LifecycleError};

fn manager(root: &Path, id: &str) -> Result<AnyCgroupManager, LifecycleError> {
    let container = load(root, id)?;
    let config = container.spec().map_err(lc(id))?;
    create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: id.to_string(),
    })
    .map_err(|e| LifecycleError::Cgroup {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

/// cgroup statistics of the container (v1, hybrid or v2).
pub fn stats(root: &Path, id: &str) -> Result<Stats, LifecycleError> {
    manager(root, id)?
        .stats()
        .map_err(|e| LifecycleError::Cgroup {
            id: id.to_string(),
            reason: e.to_string(),
        })
}

/// Every process in the container's cgroup.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>, LifecycleError> {
    let pids = manager(root, id)?
        .get_all_pids()
        .map_err(|e| LifecycleError::Cgroup {
            id: id.to_string(),
            reason: e.to_string(),
        })?;
    Ok(pids.into_iter().map(|p| p.as_raw()).collect())
}
