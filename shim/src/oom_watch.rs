//! `TaskOOM` as it happens: the runtime's [`OomWatcher`] on a thread of its own reports each
//! OOM kill in a container's memory cgroup while the container runs (a child killed, the shell
//! lives on); this file publishes them, once per kill, also when the container's end is what
//! brings the kill to light (see `oom.rs`).
//!
//! Per container the count of kills already published is kept: the watcher and the exit path
//! each publish only kills beyond it, under one lock held while publishing, so a kill is never
//! published twice and a `TaskOOM` found at exit still precedes the `TaskExit`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use wasmpod_runtime::container;
use wasmpod_runtime::oom::watch::OomWatcher;

use crate::events::Events;

/// The live OOM watch of one shim and the kills it published.
pub struct OomEvents {
    watcher: OomWatcher,
    /// Per watched container: the OOM kill count up to which `TaskOOM` was published.
    published: Mutex<HashMap<String, u64>>,
    events: Arc<Events>,
}

impl OomEvents {
    /// Starts the watcher's thread. Call after signals are blocked (the thread inherits the mask).
    pub fn start(events: Arc<Events>) -> anyhow::Result<Arc<Self>> {
        let this = Arc::new(OomEvents {
            watcher: OomWatcher::new()?,
            published: Mutex::new(HashMap::new()),
            events,
        });
        let serving = this.clone();
        std::thread::Builder::new()
            .name("oom-watch".into())
            .spawn(move || {
                serving
                    .watcher
                    .run(|id, kills| serving.publish_live(id, kills))
            })?;
        Ok(this)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        // Each update is a single insert or assignment: consistent even after a panic.
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches the memory cgroup of container `id` (just created, so its cgroup exists). A
    /// failure is logged: its kills are then still reported when it ends.
    pub fn watch(&self, root: &Path, id: &str) {
        let cgroup = match container::memory_cgroup(root, id) {
            Ok(cgroup) => cgroup,
            Err(e) => {
                tracing::warn!(id, error = %e, "no live OOM events: memory cgroup unknown");
                return;
            }
        };
        // Held across the registration: a kill reported at once waits for the baseline.
        let mut published = self.lock();
        match self.watcher.watch(id, cgroup) {
            Ok(kills) => {
                published.insert(id.to_string(), kills);
            }
            Err(e) => tracing::warn!(id, error = %e, "no live OOM events for this container"),
        }
    }

    /// Stops watching container `id` (on delete) and closes its descriptor.
    pub fn unwatch(&self, id: &str) {
        let mut published = self.lock();
        self.watcher.unwatch(id);
        published.remove(id);
    }

    /// The watcher saw container `id`'s kill count grow to `kills` while it runs.
    fn publish_live(&self, id: &str, kills: u64) {
        let mut published = self.lock();
        // Deleted meanwhile: its end was reported.
        let Some(seen) = published.get_mut(id) else {
            return;
        };
        if kills > *seen {
            tracing::info!(
                id,
                kills,
                "the kernel OOM killer killed a process of the container"
            );
            *seen = kills;
            self.events.oom(id);
        }
    }

    /// At container `id`'s exit, with `kills` read from its cgroup: publishes `TaskOOM` when
    /// there are kills not published yet (all kills, for a container that is not watched), and
    /// says whether it did.
    pub fn publish_at_exit(&self, id: &str, kills: u64) -> bool {
        let mut published = self.lock();
        let seen = published.get(id).copied().unwrap_or(0);
        if kills <= seen {
            return false;
        }
        if let Some(seen) = published.get_mut(id) {
            *seen = kills;
        }
        self.events.oom(id);
        true
    }

    /// Publishes `TaskOOM` for container `id` for a cause that is not a kernel kill (the wasm
    /// engine stopped the guest at its limit), in turn with the other publishers.
    pub fn publish_other(&self, id: &str) {
        let _published = self.lock();
        self.events.oom(id);
    }
}
