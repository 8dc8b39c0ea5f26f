//! Publishing task events to containerd. A failed publish is logged, never fatal: containerd
//! also learns the state through `State` and `Wait`.

use std::time::SystemTime;

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::topics::{
    TASK_CREATE_EVENT_TOPIC, TASK_DELETE_EVENT_TOPIC, TASK_EXEC_ADDED_EVENT_TOPIC,
    TASK_EXEC_STARTED_EVENT_TOPIC, TASK_EXIT_EVENT_TOPIC, TASK_OOM_EVENT_TOPIC,
    TASK_PAUSED_EVENT_TOPIC, TASK_RESUMED_EVENT_TOPIC, TASK_START_EVENT_TOPIC,
};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

use crate::execs::ExecProcess;
use crate::tasks::{Exit, Task};

pub struct Events {
    publisher: RemotePublisher,
    namespace: String,
}

pub fn timestamp(at: SystemTime) -> Timestamp {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

/// `(exit_status, exited_at)` as containerd's messages carry them: zero values before an exit.
pub fn exit_fields(exit: Option<&Exit>) -> (u32, MessageField<Timestamp>) {
    match exit {
        Some(exit) => (exit.code, Some(timestamp(exit.at)).into()),
        None => (0, MessageField::none()),
    }
}

impl Events {
    pub fn new(publisher: RemotePublisher, namespace: String) -> Self {
        Self {
            publisher,
            namespace,
        }
    }

    fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
        {
            tracing::warn!(topic, error = %e, "publishing event");
        }
    }

    pub fn created(&self, task: &Task) {
        let mut io = TaskIO::new();
        io.stdin = task.stdin.clone();
        io.stdout = task.stdout.clone();
        io.stderr = task.stderr.clone();
        let mut e = TaskCreate::new();
        e.container_id = task.id.clone();
        e.bundle = task.bundle.display().to_string();
        e.pid = task.pid as u32;
        e.io = Some(io).into();
        self.publish(TASK_CREATE_EVENT_TOPIC, Box::new(e));
    }

    pub fn started(&self, task: &Task) {
        let mut e = TaskStart::new();
        e.container_id = task.id.clone();
        e.pid = task.pid as u32;
        self.publish(TASK_START_EVENT_TOPIC, Box::new(e));
    }

    pub fn exited(&self, task: &Task) {
        let Some(exit) = &task.exit else { return };
        let mut e = TaskExit::new();
        e.container_id = task.id.clone();
        e.id = task.id.clone();
        e.pid = task.pid as u32;
        e.exit_status = exit.code;
        e.exited_at = Some(timestamp(exit.at)).into();
        self.publish(TASK_EXIT_EVENT_TOPIC, Box::new(e));
    }

    pub fn oom(&self, task: &Task) {
        let mut e = TaskOOM::new();
        e.container_id = task.id.clone();
        self.publish(TASK_OOM_EVENT_TOPIC, Box::new(e));
    }

    pub fn deleted(&self, task: &Task) {
        let mut e = TaskDelete::new();
        e.container_id = task.id.clone();
        e.id = task.id.clone();
        e.pid = task.pid as u32;
        (e.exit_status, e.exited_at) = exit_fields(task.exit.as_ref());
        self.publish(TASK_DELETE_EVENT_TOPIC, Box::new(e));
    }

    pub fn paused(&self, task: &Task) {
        let mut e = TaskPaused::new();
        e.container_id = task.id.clone();
        self.publish(TASK_PAUSED_EVENT_TOPIC, Box::new(e));
    }

    pub fn resumed(&self, task: &Task) {
        let mut e = TaskResumed::new();
        e.container_id = task.id.clone();
        self.publish(TASK_RESUMED_EVENT_TOPIC, Box::new(e));
    }

    pub fn exec_added(&self, exec: &ExecProcess) {
        let mut e = TaskExecAdded::new();
        e.container_id = exec.id.clone();
        e.exec_id = exec.exec_id.clone();
        self.publish(TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(e));
    }

    pub fn exec_started(&self, exec: &ExecProcess) {
        let mut e = TaskExecStarted::new();
        e.container_id = exec.id.clone();
        e.exec_id = exec.exec_id.clone();
        e.pid = exec.pid as u32;
        self.publish(TASK_EXEC_STARTED_EVENT_TOPIC, Box::new(e));
    }

    pub fn exec_exited(&self, exec: &ExecProcess) {
        let Some(exit) = &exec.exit else { return };
        let mut e = TaskExit::new();
        e.container_id = exec.id.clone();
        e.id = exec.exec_id.clone();
        e.pid = exec.pid as u32;
        e.exit_status = exit.code;
        e.exited_at = Some(timestamp(exit.at)).into();
        self.publish(TASK_EXIT_EVENT_TOPIC, Box::new(e));
    }
}
