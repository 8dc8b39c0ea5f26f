//! The kernel OOM killer's count for a container's memory cgroup.

use std::path::{Component, Path, PathBuf};

use libcgroups::common::{get_cgroup_setup, CgroupSetup, DEFAULT_CGROUP_ROOT};
use libcgroups::v1::util::get_subsystem_mount_point;
use libcgroups::v1::ControllerType;

use super::{cgroup_error, lc, load, LifecycleError};
use crate::oom::watch::MemoryCgroup;

/// Container `id`'s memory cgroup (v1 memory controller directory or v2 directory), from its
/// libcontainer state. The path comes from the spec: one that climbs out of the cgroup
/// hierarchy (`..`) is refused.
pub fn memory_cgroup(root: &Path, id: &str) -> Result<MemoryCgroup, LifecycleError> {
    let container = load(root, id)?;
    let cgroup = container.spec().map_err(lc(id))?.cgroup_path;
    let relative = cgroup.strip_prefix("/").unwrap_or(&cgroup);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(cgroup_error(
            id,
            format!("cgroup path {} leaves the hierarchy", cgroup.display()),
        ));
    }
    Ok(match get_cgroup_setup().map_err(|e| cgroup_error(id, e))? {
        CgroupSetup::Unified => MemoryCgroup::V2(PathBuf::from(DEFAULT_CGROUP_ROOT).join(relative)),
        CgroupSetup::Legacy | CgroupSetup::Hybrid => MemoryCgroup::V1(
            get_subsystem_mount_point(&ControllerType::Memory)
                .map_err(|e| cgroup_error(id, e))?
                .join(relative),
        ),
    })
}

/// How many processes of container `id` the kernel's OOM killer has killed: the `oom_kill` line
/// of `memory.oom_control` (v1) or `memory.events` (v2). Read it before the cgroup is removed.
pub fn oom_kills(root: &Path, id: &str) -> Result<u64, LifecycleError> {
    let cgroup = memory_cgroup(root, id)?;
    cgroup.oom_kills().map_err(|e| {
        cgroup_error(
            id,
            format!("reading {}: {e}", cgroup.counter_file().display()),
        )
    })
}
