//! The task service's exec verbs: `Exec` records the process, `Start` runs it in the running
//! container (through the zygote, like `Create`), then `Wait`, `State`, `Kill`, `Delete`.

use std::path::Path;

use containerd_shim::api::{self, Status};
use containerd_shim::protos::protobuf::well_known_types::empty::Empty;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::TtrpcResult;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use wasmpod_runtime::container::{self, ExecOptions};
use wasmpod_runtime::resolve::View;
use wasmpod_runtime::WasmEngine;

use crate::events::{exit_fields, timestamp};
use crate::execs::ExecProcess;
use crate::service::{error, not_found, opt_path, Service};

/// Exit status reported for an exec that could not be started.
const EXEC_FAILED_CODE: u32 = 255;

impl<E: WasmEngine> Service<E> {
    fn exec_process(&self, id: &str, exec_id: &str) -> Result<ExecProcess, ttrpc::Error> {
        self.execs
            .get(id, exec_id)
            .ok_or_else(|| not_found(&format!("{id}/{exec_id}")))
    }

    /// The running container as its init sees it. The root is opened first and the task
    /// checked after: until the shim reaps the init its pid cannot name another process.
    fn container_view(&self, id: &str, pid: i32) -> Result<View, ttrpc::Error> {
        let not_running = || {
            error(
                Code::FAILED_PRECONDITION,
                format!("container {id} is not running"),
            )
        };
        let view = View::of_process(pid).map_err(|_| not_running())?;
        match self.tasks.get(id) {
            Some(task) if task.status == Status::RUNNING && task.exit.is_none() => Ok(view),
            _ => Err(not_running()),
        }
    }

    pub(crate) fn exec_add(&self, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        let task = self.tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        if task.status != Status::RUNNING {
            return Err(error(
                Code::FAILED_PRECONDITION,
                format!("container {} is not running", req.id),
            ));
        }
        let exec = ExecProcess {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            pid: 0,
            status: Status::CREATED,
            exit: None,
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            spec: req.spec.value.clone(),
        };
        if !self.execs.add(exec.clone()) {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("exec {} exists in {}", req.exec_id, req.id),
            ));
        }
        self.events.exec_added(&exec);
        Ok(Empty::new())
    }

    pub(crate) fn exec_start(&self, id: &str, exec_id: &str) -> TtrpcResult<api::StartResponse> {
        let exec = self.exec_process(id, exec_id)?;
        let task = self.tasks.get(id).ok_or_else(|| not_found(id))?;
        let view = self.container_view(id, task.pid)?;
        let opts = ExecOptions {
            id,
            exec_id,
            bundle: Path::new(&task.bundle),
            root: &self.root,
            view: &view,
            process_json: &exec.spec,
            stdin: opt_path(&exec.stdin),
            stdout: opt_path(&exec.stdout),
            stderr: opt_path(&exec.stderr),
            terminal: exec.terminal,
        };
        let started = container::exec(self.zygote, &self.preparer()?, &opts).map_err(|e| {
            tracing::warn!(id, exec_id, error = %e, "exec failed");
            self.execs.set_failed(id, exec_id, EXEC_FAILED_CODE);
            crate::status::status(e.kind(), e.to_string())
        })?;
        tracing::info!(
            id,
            exec_id,
            pid = started.pid,
            wasm = started.wasm,
            "exec started"
        );
        if let Some(master) = started.console {
            // Before the pid is recorded: an exit the reaper sees from then on finds it.
            if let Err(e) = self
                .consoles
                .attach(id, exec_id, master, &exec.stdin, &exec.stdout)
            {
                tracing::warn!(id, exec_id, error = %e, "attaching the exec's terminal");
                let _ = kill(Pid::from_raw(started.pid), Signal::SIGKILL);
                self.execs.set_failed(id, exec_id, EXEC_FAILED_CODE);
                return Err(error(Code::INTERNAL, format!("terminal: {e}")));
            }
        }
        let exec = self
            .execs
            .set_started(id, exec_id, started.pid, &self.tasks)
            .ok_or_else(|| not_found(&format!("{id}/{exec_id}")))?;
        self.events.exec_started(&exec);
        if exec.exit.is_some() {
            // It finished before we could record its pid; the reaper parked its exit for us.
            self.consoles.finish(id, exec_id);
            self.events.exec_exited(&exec);
        } else if let Some(exited) = self.execs.finish_start(id, exec_id) {
            // It finished while we published TaskExecStarted; the reaper left its exit to us.
            self.events.exec_exited(&exited);
        }
        Ok(api::StartResponse {
            pid: started.pid as u32,
            ..Default::default()
        })
    }

    pub(crate) fn exec_state(&self, id: &str, exec_id: &str) -> TtrpcResult<api::StateResponse> {
        let exec = self.exec_process(id, exec_id)?;
        let mut resp = api::StateResponse {
            id: exec.exec_id.clone(),
            pid: exec.pid as u32,
            status: exec.status.into(),
            stdin: exec.stdin.clone(),
            stdout: exec.stdout.clone(),
            stderr: exec.stderr.clone(),
            exec_id: exec.exec_id.clone(),
            ..Default::default()
        };
        (resp.exit_status, resp.exited_at) = exit_fields(exec.exit.as_ref());
        Ok(resp)
    }

    pub(crate) fn exec_wait(&self, id: &str, exec_id: &str) -> TtrpcResult<api::WaitResponse> {
        let exit = self
            .execs
            .wait_exit(id, exec_id)
            .ok_or_else(|| not_found(&format!("{id}/{exec_id}")))?;
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    pub(crate) fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> TtrpcResult<Empty> {
        let exec = self.exec_process(id, exec_id)?;
        if exec.pid == 0 || exec.exit.is_some() {
            return Err(error(
                Code::NOT_FOUND,
                format!("exec {exec_id}: process not running"),
            ));
        }
        let signal = Signal::try_from(signal as i32)
            .map_err(|e| error(Code::INVALID_ARGUMENT, format!("signal {signal}: {e}")))?;
        kill(Pid::from_raw(exec.pid), signal)
            .map_err(|e| error(Code::INTERNAL, format!("kill exec {exec_id}: {e}")))?;
        Ok(Empty::new())
    }

    pub(crate) fn exec_delete(&self, id: &str, exec_id: &str) -> TtrpcResult<api::DeleteResponse> {
        let exec = self.exec_process(id, exec_id)?;
        if exec.pid != 0 && exec.exit.is_none() {
            return Err(error(
                Code::FAILED_PRECONDITION,
                format!("exec {exec_id} is still running"),
            ));
        }
        let path = Path::new(&self.tasks.get(id).map(|t| t.bundle).unwrap_or_default())
            .join("wasmpod")
            .join(format!("exec-{exec_id}.json"));
        let _ = std::fs::remove_file(path);
        self.execs.remove(id, exec_id);
        let mut resp = api::DeleteResponse {
            pid: exec.pid as u32,
            ..Default::default()
        };
        (resp.exit_status, resp.exited_at) = exit_fields(exec.exit.as_ref());
        Ok(resp)
    }
}
