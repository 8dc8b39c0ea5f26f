//! The task service's Pause and Resume: freeze or thaw the container's cgroup, for wasm and
//! native containers alike.

use containerd_shim::api::Status;
use containerd_shim::protos::protobuf::well_known_types::empty::Empty;
use containerd_shim::protos::ttrpc::Code;
use containerd_shim::TtrpcResult;
use wasmpod_runtime::container;
use wasmpod_runtime::WasmEngine;

use crate::service::{error, lifecycle_error, Service};

impl<E: WasmEngine> Service<E> {
    /// Pauses (`pause`) a RUNNING task or resumes a PAUSED one.
    pub(crate) fn freeze(&self, id: &str, pause: bool) -> TtrpcResult<Empty> {
        let (from, to, verb) = if pause {
            (Status::RUNNING, Status::PAUSED, "pause")
        } else {
            (Status::PAUSED, Status::RUNNING, "resume")
        };
        let task = self.task(id, "")?;
        if task.status != from {
            return Err(error(
                Code::FAILED_PRECONDITION,
                format!("container {id}: cannot {verb} a {:?} task", task.status),
            ));
        }
        tracing::info!(id, verb);
        let result = if pause {
            container::pause(&self.root, id)
        } else {
            container::resume(&self.root, id)
        };
        result.map_err(lifecycle_error)?;
        // An exit recorded meanwhile (SIGKILL right after the freeze) keeps the task STOPPED.
        if let Some(task) = self.tasks.set_status(id, to) {
            if pause {
                self.events.paused(&task);
            } else {
                self.events.resumed(&task);
            }
        }
        Ok(Empty::new())
    }
}
