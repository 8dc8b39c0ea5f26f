//! The ttrpc task service containerd talks to. Each verb maps onto the runtime's lifecycle
//! functions; this file owns only the protocol mapping and the task table.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use containerd_shim::api;
use containerd_shim::protos::protobuf::well_known_types::empty::Empty;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{TtrpcContext, TtrpcResult};
use wasmpod_runtime::cache::{self, ModuleCache};
use wasmpod_runtime::compile::{self, CompileConfig, Compiler};
use wasmpod_runtime::container::{self, Preparer};
use wasmpod_runtime::mount::unmount_all;
use wasmpod_runtime::{WasmEngine, Zygote};

use crate::console::Consoles;
use crate::events::{exit_fields, timestamp, Events};
use crate::execs::Execs;
use crate::image_layers::ImageLayers;
use crate::lifetime::Lifetime;
use crate::oom_watch::OomEvents;
use crate::otel;
use crate::status::status;
use crate::tasks::{Task, Tasks};

pub struct Service<E: WasmEngine> {
    pub(crate) tasks: Arc<Tasks>,
    pub(crate) execs: Arc<Execs>,
    pub(crate) events: Arc<Events>,
    pub(crate) oom: Arc<OomEvents>,
    pub(crate) consoles: Arc<Consoles>,
    pub(crate) zygote: &'static Zygote,
    engine: OnceLock<E>,
    pub(crate) cache: ModuleCache,
    pub(crate) compiler: Compiler,
    pub(crate) root: PathBuf,
    pub(crate) lifetime: Arc<Lifetime>,
    pub(crate) image_layers: ImageLayers,
}

pub fn error(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

/// The ttrpc status for a lifecycle failure: unknown container, wrong state, or internal.
pub(crate) fn lifecycle_error(e: container::LifecycleError) -> ttrpc::Error {
    status(e.kind(), e.to_string())
}

pub(crate) fn not_found(id: &str) -> ttrpc::Error {
    error(Code::NOT_FOUND, format!("container {id} not found"))
}

fn unsupported(what: &str) -> ttrpc::Error {
    error(
        Code::UNIMPLEMENTED,
        format!("{what} is not supported by wasmpod yet"),
    )
}

pub(crate) fn opt_path(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}

impl<E: WasmEngine> Service<E> {
    pub fn new(
        zygote: &'static Zygote,
        namespace: &str,
        containerd_address: &str,
        events: Arc<Events>,
        oom: Arc<OomEvents>,
        lifetime: Arc<Lifetime>,
    ) -> Self {
        let cache = ModuleCache::for_engine(E::NAME);
        // Beside the node's cache; when that directory is unsafe, in wasmpod's state instead.
        let slots = compile::slot_dir(&if cache.is_shared() {
            cache::base_dir()
        } else {
            PathBuf::from(container::DEFAULT_STATE_ROOT)
        });
        Self {
            tasks: Arc::new(Tasks::default()),
            execs: Arc::new(Execs::default()),
            events,
            oom,
            consoles: Arc::new(Consoles::default()),
            zygote,
            engine: OnceLock::new(),
            cache,
            compiler: Compiler::new(CompileConfig::from_env(), slots),
            root: container::state_root(namespace),
            lifetime,
            image_layers: ImageLayers::new(containerd_address, namespace),
        }
    }

    pub(crate) fn engine(&self) -> Result<&E, ttrpc::Error> {
        if let Some(e) = self.engine.get() {
            return Ok(e);
        }
        let engine = E::new().map_err(|e| error(Code::INTERNAL, e.to_string()))?;
        Ok(self.engine.get_or_init(|| engine))
    }

    /// The engine (for its compatibility key), the cache and the node's compiler.
    pub(crate) fn preparer(&self) -> Result<Preparer<'_, E>, ttrpc::Error> {
        Ok(Preparer {
            engine: self.engine()?,
            cache: &self.cache,
            compiler: &self.compiler,
        })
    }

    pub(crate) fn task(&self, id: &str, exec_id: &str) -> Result<Task, ttrpc::Error> {
        if !exec_id.is_empty() {
            return Err(unsupported("exec"));
        }
        self.tasks.get(id).ok_or_else(|| not_found(id))
    }

    /// Runs task verb `name` on container `id` (and `exec_id`) inside its span, which records
    /// a failure. The span is a child of the container's Create span: one trace per container.
    pub(crate) fn traced<T>(
        &self,
        name: &'static str,
        id: &str,
        exec_id: &str,
        verb: impl FnOnce() -> TtrpcResult<T>,
    ) -> TtrpcResult<T> {
        let trace = || self.tasks.get(id).map(|t| t.trace);
        otel::traced(name, id, exec_id, E::NAME, trace, verb)
    }

    fn do_delete(&self, task: &Task) -> Result<(), ttrpc::Error> {
        container::delete(&self.root, &task.id).map_err(lifecycle_error)?;
        // Its processes are gone: their terminals hang up.
        self.consoles.finish_all(&task.id);
        if let Some(rootfs) = &task.mounted_rootfs {
            unmount_all(rootfs).map_err(|e| error(Code::INTERNAL, e.to_string()))?;
        }
        Ok(())
    }
}

impl<E: WasmEngine> containerd_shim::Task for Service<E> {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        // Held until the task is in the table: a concurrent Create of this id fails untouched.
        let _reserved = self
            .tasks
            .reserve(&req.id)
            .ok_or_else(|| error(Code::ALREADY_EXISTS, format!("container {} exists", req.id)))?;
        let task = self.traced_create(&req)?;
        let pid = task.pid as u32;
        self.tasks.insert(task.clone());
        self.oom.watch(&self.root, &task.id);
        self.events.created(&task);
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        self.traced("Start", &req.id, &req.exec_id, || {
            if !req.exec_id.is_empty() {
                return self.exec_start(&req.id, &req.exec_id);
            }
            let task = self.task(&req.id, &req.exec_id)?;
            // TaskStart goes out before TaskExit, however soon the guest ends.
            self.tasks.begin_start(&req.id);
            let started = container::start(&self.root, &req.id).map_err(lifecycle_error);
            if started.is_ok() {
                self.tasks.set_running(&req.id);
                self.events.started(&task);
            }
            if let Some(exited) = self.tasks.finish_start(&req.id) {
                crate::daemon::publish_exit(
                    &self.root,
                    &exited,
                    &self.events,
                    &self.oom,
                    &self.consoles,
                );
                self.tasks.exit_published(&exited.id);
            }
            started?;
            Ok(api::StartResponse {
                pid: task.pid as u32,
                ..Default::default()
            })
        })
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        if !req.exec_id.is_empty() {
            return self.exec_state(&req.id, &req.exec_id);
        }
        let task = self.task(&req.id, &req.exec_id)?;
        let mut resp = api::StateResponse {
            id: task.id.clone(),
            bundle: task.bundle.display().to_string(),
            pid: task.pid as u32,
            status: task.status.into(),
            stdin: task.stdin.clone(),
            stdout: task.stdout.clone(),
            stderr: task.stderr.clone(),
            ..Default::default()
        };
        (resp.exit_status, resp.exited_at) = exit_fields(task.exit.as_ref());
        Ok(resp)
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        if !req.exec_id.is_empty() {
            return self.exec_wait(&req.id, &req.exec_id);
        }
        self.task(&req.id, &req.exec_id)?;
        let exit = self
            .tasks
            .wait_exit(&req.id)
            .ok_or_else(|| not_found(&req.id))?;
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        self.traced("Kill", &req.id, &req.exec_id, || {
            if !req.exec_id.is_empty() {
                return self.exec_kill(&req.id, &req.exec_id, req.signal);
            }
            let task = self.task(&req.id, &req.exec_id)?;
            if task.exit.is_some() && !req.all {
                return Err(error(
                    Code::NOT_FOUND,
                    format!("container {}: process already finished", req.id),
                ));
            }
            tracing::info!(id = %req.id, signal = req.signal, all = req.all, "kill");
            container::kill(&self.root, &req.id, req.signal, req.all).map_err(lifecycle_error)?;
            Ok(Empty::new())
        })
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        self.traced("Delete", &req.id, &req.exec_id, || {
            if !req.exec_id.is_empty() {
                return self.exec_delete(&req.id, &req.exec_id);
            }
            let task = self.task(&req.id, &req.exec_id)?;
            self.do_delete(&task)?;
            self.oom.unwatch(&req.id);
            self.execs.remove_all(&req.id);
            let task = self.tasks.remove(&req.id).unwrap_or(task);
            self.events.deleted(&task);
            let mut resp = api::DeleteResponse {
                pid: task.pid as u32,
                ..Default::default()
            };
            (resp.exit_status, resp.exited_at) = exit_fields(task.exit.as_ref());
            Ok(resp)
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        self.task(&req.id, "")?;
        let pids = container::pids(&self.root, &req.id).map_err(lifecycle_error)?;
        let processes = pids
            .into_iter()
            .map(|pid| ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        self.task(&req.id, "")?;
        let stats = container::stats(&self.root, &req.id).map_err(lifecycle_error)?;
        let any = crate::metrics::to_any(
            &stats,
            libcgroups::common::get_cgroup_setup()
                .map_err(|e| error(Code::INTERNAL, e.to_string()))?,
        )
        .map_err(|e| error(Code::INTERNAL, e))?;
        Ok(api::StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        // `start` calls Connect right before handing our address to containerd.
        self.lifetime.reserve();
        let task_pid = self.tasks.get(&req.id).map_or(0, |t| t.pid as u32);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<Empty> {
        // containerd sends Shutdown after each Delete and stops reading our log right after
        // it: the task's spans go out now, so an export failure is still logged (bounded).
        otel::flush();
        self.lifetime.exit_when_idle(self.tasks.clone());
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        // The container holds containerd's stdin FIFO itself; EOF reaches it when
        // containerd closes the write side. Nothing is buffered in the shim.
        if req.exec_id.is_empty() {
            self.task(&req.id, "")?;
        } else if self.execs.get(&req.id, &req.exec_id).is_none() {
            return Err(not_found(&format!("{}/{}", req.id, req.exec_id)));
        }
        Ok(Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        let (id, exec_id) = (req.id.clone(), req.exec_id.clone());
        self.traced("Exec", &id, &exec_id, || self.exec_add(req))
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<Empty> {
        if req.exec_id.is_empty() {
            self.task(&req.id, "")?;
        } else if self.execs.get(&req.id, &req.exec_id).is_none() {
            return Err(not_found(&format!("{}/{}", req.id, req.exec_id)));
        }
        // A process without a terminal (or whose terminal is closed) ignores it, as with runc.
        self.consoles
            .resize(&req.id, &req.exec_id, req.width, req.height)
            .map_err(|e| error(Code::INTERNAL, format!("resizing the terminal: {e}")))?;
        Ok(Empty::new())
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        self.freeze(&req.id, true)
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        self.freeze(&req.id, false)
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        self.traced("Update", &req.id, "", || self.update_resources(&req))
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        Err(unsupported("checkpoint"))
    }
}
