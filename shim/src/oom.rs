//! Whether a container that just exited ended out of memory, for the `TaskOOM` event that CRI
//! turns into the reason `OOMKilled`. See `wasmpod_runtime::oom` for the two sources. Kills
//! while the container ran were published as they happened (`oom_watch.rs`); here only what is
//! new is.

use std::path::Path;

use wasmpod_runtime::container;

use crate::oom_watch::OomEvents;
use crate::tasks::Task;

/// Publishes `TaskOOM` when task `task` ended out of memory and that was not published yet.
/// Call before the container is deleted (the kernel's count lives in its memory cgroup) and
/// before its `TaskExit`.
pub fn publish_at_exit(root: &Path, task: &Task, oom: &OomEvents) {
    if task
        .oom_report
        .as_ref()
        .is_some_and(|r| r.memory_limit_hit())
    {
        tracing::info!(id = %task.id, cause = "the wasm engine stopped the guest at the container's memory limit", "container ended out of memory");
        oom.publish_other(&task.id);
        return;
    }
    match container::oom_kills(root, &task.id) {
        Ok(kills) => {
            if oom.publish_at_exit(&task.id, kills) {
                tracing::info!(id = %task.id, kills, cause = "the kernel OOM killer killed a process of the container", "container ended out of memory");
            }
        }
        Err(e) => tracing::debug!(id = %task.id, error = %e, "reading the OOM kill count"),
    }
}
