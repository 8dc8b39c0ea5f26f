//! The task service's Update: new cgroup limits for a running container (CRI's
//! UpdateContainerResources, `kubectl` in-place resize).

use containerd_shim::api::{Status, UpdateTaskRequest};
use containerd_shim::protos::protobuf::well_known_types::empty::Empty;
use containerd_shim::protos::ttrpc::Code;
use containerd_shim::TtrpcResult;
use oci_spec::runtime::LinuxResources;
use wasmpod_runtime::container;
use wasmpod_runtime::memory_limit::guest_share;
use wasmpod_runtime::WasmEngine;

use crate::service::{error, lifecycle_error, Service};

impl<E: WasmEngine> Service<E> {
    pub(crate) fn update_resources(&self, req: &UpdateTaskRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id, "")?;
        if !matches!(
            task.status,
            Status::CREATED | Status::RUNNING | Status::PAUSED
        ) {
            return Err(error(
                Code::FAILED_PRECONDITION,
                format!(
                    "container {}: cannot update a {:?} task",
                    req.id, task.status
                ),
            ));
        }
        let resources = decode_resources(&req.resources.value)
            .map_err(|e| error(Code::INVALID_ARGUMENT, format!("container {}: {e}", req.id)))?;
        let memory_limit = resources.memory().as_ref().and_then(|m| m.limit());
        // Only a wasm task has a report page, and with it a guest whose cap can follow.
        let guest = task.oom_report.as_ref().filter(|_| memory_limit.is_some());
        if guest.is_some() && !E::LIVE_MEMORY_LIMIT {
            return Err(error(
                Code::UNIMPLEMENTED,
                format!(
                    "container {}: the {} engine cannot change a running wasm guest's memory \
                     limit; nothing was changed (recreate the container with the new limit)",
                    req.id,
                    E::NAME
                ),
            ));
        }
        tracing::info!(id = %req.id, ?resources, "update");
        container::update(&self.root, &req.id, &resources).map_err(lifecycle_error)?;
        if let (Some(report), Some(limit)) = (guest, memory_limit) {
            // -1 (or 0) lifts the limit, as it does for the cgroup.
            let cap = u64::try_from(limit)
                .ok()
                .filter(|l| *l > 0)
                .map_or(u64::MAX, guest_share);
            report.set_guest_memory_limit(cap);
            tracing::info!(id = %req.id, guest_memory_limit = cap, "wasm guest's memory cap updated");
        }
        Ok(Empty::new())
    }
}

/// containerd sends the runtime spec's `LinuxResources` as JSON inside a protobuf `Any`.
fn decode_resources(json: &[u8]) -> Result<LinuxResources, String> {
    if json.is_empty() {
        return Err("update without resources".to_string());
    }
    serde_json::from_slice(json).map_err(|e| format!("bad LinuxResources in update: {e}"))
}

#[cfg(test)]
mod tests {
    use super::decode_resources;

    #[test]
    fn decodes_containerd_json_and_rejects_garbage() {
        let json = br#"{"memory":{"limit":67108864},"cpu":{"shares":512}}"#;
        let r = decode_resources(json).unwrap();
        assert_eq!(r.memory().as_ref().and_then(|m| m.limit()), Some(67108864));
        assert_eq!(r.cpu().as_ref().and_then(|c| c.shares()), Some(512));
        assert!(decode_resources(b"").is_err());
        assert!(decode_resources(b"{not json")
            .unwrap_err()
            .contains("LinuxResources"));
    }
}
