//! The task service's Create: the rootfs mounts, the image's wasm layer and the OOM report
//! channel handed to the runtime's `create`, and the new task (with its terminal) recorded.

use std::path::Path;
use std::sync::Arc;

use containerd_shim::api::{self, Status};
use containerd_shim::protos::ttrpc::{self, Code};
use wasmpod_runtime::container::{self, CreateOptions};
use wasmpod_runtime::mount::{unmount_all, RootfsMount};
use wasmpod_runtime::oom::OomReport;
use wasmpod_runtime::WasmEngine;

use crate::otel;
use crate::service::{error, opt_path, Service};
use crate::status::status;
use crate::tasks::Task;

impl<E: WasmEngine> Service<E> {
    /// `do_create` in the container's Create span, whose context the task keeps for
    /// the spans of its later verbs.
    pub(crate) fn traced_create(&self, req: &api::CreateTaskRequest) -> Result<Task, ttrpc::Error> {
        if !otel::active() {
            return self.do_create(req);
        }
        let span = otel::task_span("Create", &req.id, "", E::NAME, None);
        let sandbox_id = crate::start::group_key(Path::new(&req.bundle), &req.id);
        span.record("sandbox.id", sandbox_id.as_str());
        let result = span.in_scope(|| self.do_create(req));
        match result {
            Ok(mut task) => {
                task.trace = otel::TaskTrace::new(&span, sandbox_id, task.trace.module_digest);
                task.trace.record(&span);
                Ok(task)
            }
            Err(e) => {
                otel::record_error(&span, &e);
                Err(e)
            }
        }
    }

    pub(crate) fn do_create(&self, req: &api::CreateTaskRequest) -> Result<Task, ttrpc::Error> {
        let _in_flight = self.lifetime.begin_create().ok_or_else(|| {
            error(
                Code::UNAVAILABLE,
                "this shim is shutting down; retry the container",
            )
        })?;
        let bundle = Path::new(&req.bundle);
        let image_module = self
            .image_layers
            .module_for(&req.id, bundle, E::SUPPORTS_COMPONENTS)
            .map_err(|e| status(e.kind(), e.to_string()))?;
        let mounts: Vec<RootfsMount> = req
            .rootfs
            .iter()
            .map(|m| RootfsMount {
                fstype: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        // Only a wasm guest reports; a native one's OOM is in the cgroup. The memfd is cheap, and
        // which kind it is is known only inside `create`.
        let oom_report = OomReport::new()
            .map_err(|e| error(Code::INTERNAL, format!("creating the OOM report: {e}")))?;
        let opts = CreateOptions {
            id: &req.id,
            bundle,
            root: &self.root,
            rootfs_mounts: &mounts,
            stdin: opt_path(&req.stdin),
            stdout: opt_path(&req.stdout),
            stderr: opt_path(&req.stderr),
            oom_report: Some(oom_report.fd()),
            image_module: image_module.as_ref(),
            terminal: req.terminal,
        };
        let created = container::create(self.zygote, &self.preparer()?, &opts).map_err(|e| {
            tracing::warn!(id = %req.id, error = %e, kind = ?e.kind(), "create failed");
            status(e.kind(), e.to_string())
        })?;
        tracing::info!(id = %req.id, pid = created.pid, wasm = created.wasm, terminal = req.terminal, "container created");
        if let Some(master) = created.console {
            if let Err(e) = self
                .consoles
                .attach(&req.id, "", master, &req.stdin, &req.stdout)
            {
                tracing::warn!(id = %req.id, error = %e, "attaching the terminal");
                if let Err(e) = container::delete(&self.root, &req.id) {
                    tracing::warn!(id = %req.id, error = %e, "cleanup after failed create");
                }
                if !mounts.is_empty() {
                    let _ = unmount_all(&created.rootfs);
                }
                return Err(error(Code::INTERNAL, format!("terminal: {e}")));
            }
        }
        Ok(Task {
            id: req.id.clone(),
            bundle: bundle.to_path_buf(),
            pid: created.pid,
            status: Status::CREATED,
            exit: None,
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            mounted_rootfs: (!mounts.is_empty()).then_some(created.rootfs),
            oom_report: created.wasm.then(|| Arc::new(oom_report)),
            trace: otel::TaskTrace::of_module(created.module_digest),
        })
    }
}
