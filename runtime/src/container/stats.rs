use std::path::Path;

use libcgroups::common::CgroupManager;
use libcgroups::stats::Stats;

use super::{cgroup_error, cgroup_manager, load, LifecycleError};

/// cgroup statistics of the container (v1, hybrid or v2).
pub fn stats(root: &Path, id: &str) -> Result<Stats, LifecycleError> {
    cgroup_manager(&*load(root, id)?, id)?
        .stats()
        .map_err(|e| cgroup_error(id, e))
}

/// Every process in the container's cgroup.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>, LifecycleError> {
    let pids = cgroup_manager(&*load(root, id)?, id)?
        .get_all_pids()
        .map_err(|e| cgroup_error(id, e))?;
    Ok(pids.into_iter().map(|p| p.as_raw()).collect())
}
