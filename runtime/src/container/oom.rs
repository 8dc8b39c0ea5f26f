//! The kernel OOM killer's count for a container's memory cgroup.

use std::path::{Path, PathBuf};

use libcgroups::common::{get_cgroup_setup, CgroupSetup, DEFAULT_CGROUP_ROOT};
use libcgroups::v1::util::get_subsystem_mount_point;
use libcgroups::v1::ControllerType;

use super::{cgroup_error, lc, load, LifecycleError};

/// How many processes of container `id` the kernel's OOM killer has killed: the `oom_kill` line
/// of `memory.oom_control` (v1) or `memory.events` (v2). Read it before the cgroup is removed.
pub fn oom_kills(root: &Path, id: &str) -> Result<u64, LifecycleError> {
    let container = load(root, id)?;
    let cgroup = container.spec().map_err(lc(id))?.cgroup_path;
    let relative = cgroup.strip_prefix("/").unwrap_or(&cgroup);
    let file = match get_cgroup_setup().map_err(|e| cgroup_error(id, e))? {
        CgroupSetup::Unified => PathBuf::from(DEFAULT_CGROUP_ROOT)
            .join(relative)
            .join("memory.events"),
        CgroupSetup::Legacy | CgroupSetup::Hybrid => {
            get_subsystem_mount_point(&ControllerType::Memory)
                .map_err(|e| cgroup_error(id, e))?
                .join(relative)
                .join("memory.oom_control")
        }
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| cgroup_error(id, format!("reading {}: {e}", file.display())))?;
    Ok(oom_kill_count(&text))
}

/// The `oom_kill N` line of `memory.oom_control` / `memory.events`; 0 when absent (kernels
/// before 4.13 have no such line in v1).
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::oom_kill_count;

    #[test]
    fn reads_v1_and_v2_counters() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(oom_kill_count("oom_kill_disable 0\nunder_oom 0\n"), 0);
    }
}
