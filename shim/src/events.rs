//! Publishing task events to containerd. A failed publish is logged, never fatal: containerd
//! also learns the state through `State` and `Wait`.

use std::sync::Mutex;
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

/// Publishes to containerd's ttrpc address. A restarted containerd closes our connection: the
/// next publish reconnects and retries once, so events after the restart are not lost.
pub struct Events {
    address: String,
    publisher: Mutex<Option<RemotePublisher>>,
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

fn connect(address: &str) -> Option<RemotePublisher> {
    RemotePublisher::new(address)
        .inspect_err(|e| tracing::warn!(address, error = %e, "connecting to containerd's events"))
        .ok()
}

/// `(exit_status, exited_at)` as containerd's messages carry them: zero values before an exit.
pub fn exit_fields(exit: Option<&Exit>) -> (u32, MessageField<Timestamp>) {
    match exit {
        Some(exit) => (exit.code, Some(timestamp(exit.at)).into()),
        None => (0, MessageField::none()),
    }
}

impl Events {
    pub fn new(address: &str, namespace: String) -> Self {
        let publisher = connect(address);
        Self {
            address: address.to_string(),
            publisher: Mutex::new(publisher),
            namespace,
        }
    }

    fn publish<M: MessageDyn + Clone>(&self, topic: &str, event: M) {
        let mut publisher = self.publisher.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            if publisher.is_none() {
                *publisher = connect(&self.address);
            }
            let Some(client) = publisher.as_ref() else {
                break;
            };
            let sent = client.publish(
                Context::default(),
                topic,
                &self.namespace,
                Box::new(event.clone()),
            );
            match sent {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(topic, attempt, error = %e, "publishing event; reconnecting");
                    *publisher = None;
                }
            }
        }
        tracing::warn!(topic, address = %self.address, "event not published: containerd unreachable");
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
        self.publish(TASK_CREATE_EVENT_TOPIC, e);
    }

    pub fn started(&self, task: &Task) {
        let mut e = TaskStart::new();
        e.container_id = task.id.clone();
        e.pid = task.pid as u32;
        self.publish(TASK_START_EVENT_TOPIC, e);
    }

    pub fn exited(&self, task: &Task) {
        let Some(exit) = &task.exit else { return };
        let mut e = TaskExit::new();
        e.container_id = task.id.clone();
        e.id = task.id.clone();
        e.pid = task.pid as u32;
        e.exit_status = exit.code;
        e.exited_at = Some(timestamp(exit.at)).into();
        self.publish(TASK_EXIT_EVENT_TOPIC, e);
    }

    pub fn oom(&self, id: &str) {
        let mut e = TaskOOM::new();
        e.container_id = id.to_string();
        self.publish(TASK_OOM_EVENT_TOPIC, e);
    }

    pub fn deleted(&self, task: &Task) {
        let mut e = TaskDelete::new();
        e.container_id = task.id.clone();
        e.id = task.id.clone();
        e.pid = task.pid as u32;
        (e.exit_status, e.exited_at) = exit_fields(task.exit.as_ref());
        self.publish(TASK_DELETE_EVENT_TOPIC, e);
    }

    pub fn paused(&self, task: &Task) {
        let mut e = TaskPaused::new();
        e.container_id = task.id.clone();
        self.publish(TASK_PAUSED_EVENT_TOPIC, e);
    }

    pub fn resumed(&self, task: &Task) {
        let mut e = TaskResumed::new();
        e.container_id = task.id.clone();
        self.publish(TASK_RESUMED_EVENT_TOPIC, e);
    }

    pub fn exec_added(&self, exec: &ExecProcess) {
        let mut e = TaskExecAdded::new();
        e.container_id = exec.id.clone();
        e.exec_id = exec.exec_id.clone();
        self.publish(TASK_EXEC_ADDED_EVENT_TOPIC, e);
    }

    pub fn exec_started(&self, exec: &ExecProcess) {
        let mut e = TaskExecStarted::new();
        e.container_id = exec.id.clone();
        e.exec_id = exec.exec_id.clone();
        e.pid = exec.pid as u32;
        self.publish(TASK_EXEC_STARTED_EVENT_TOPIC, e);
    }

    pub fn exec_exited(&self, exec: &ExecProcess) {
        let Some(exit) = &exec.exit else { return };
        let mut e = TaskExit::new();
        e.container_id = exec.id.clone();
        e.id = exec.exec_id.clone();
        e.pid = exec.pid as u32;
        e.exit_status = exit.code;
        e.exited_at = Some(timestamp(exit.at)).into();
        self.publish(TASK_EXIT_EVENT_TOPIC, e);
    }
}
