//! Whether a container that just exited ended out of memory, for the `TaskOOM` event that CRI
//! turns into the reason `OOMKilled`. See `wasmpod_runtime::oom` for the two sources.

use std::path::Path;

use wasmpod_runtime::container;

use crate::tasks::Task;

/// Why task `task` ended out of memory, if it did. Call before the container is deleted: the
/// kernel's count lives in its memory cgroup.
pub fn out_of_memory_cause(root: &Path, task: &Task) -> Option<&'static str> {
    if task
        .oom_report
        .as_ref()
        .is_some_and(|r| r.memory_limit_hit())
    {
        return Some("the wasm engine stopped the guest at the container's memory limit");
    }
    match container::oom_kills(root, &task.id) {
        Ok(0) => None,
        Ok(_) => Some("the kernel OOM killer killed a process of the container"),
        Err(e) => {
            tracing::debug!(id = %task.id, error = %e, "reading the OOM kill count");
            None
        }
    }
}
