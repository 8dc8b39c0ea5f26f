//! Exec processes (`ctr task exec`, CRI ExecSync): one table keyed by (container, exec id).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim::api::Status;

use crate::tasks::{Exit, Tasks};

#[derive(Debug, Clone)]
pub struct ExecProcess {
    pub id: String,
    pub exec_id: String,
    /// 0 until started.
    pub pid: i32,
    pub status: Status,
    pub exit: Option<Exit>,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    /// containerd asked for a terminal.
    pub terminal: bool,
    /// The OCI process as JSON, from `Exec`, run on `Start`.
    pub spec: Vec<u8>,
}

type Key = (String, String);

#[derive(Default)]
pub struct Execs {
    inner: Mutex<HashMap<Key, ExecProcess>>,
    exited: Condvar,
}

fn key(id: &str, exec_id: &str) -> Key {
    (id.to_string(), exec_id.to_string())
}

impl Execs {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, ExecProcess>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False when the exec id is taken.
    pub fn add(&self, exec: ExecProcess) -> bool {
        let mut map = self.lock();
        let k = key(&exec.id, &exec.exec_id);
        if map.contains_key(&k) {
            return false;
        }
        map.insert(k, exec);
        true
    }

    pub fn get(&self, id: &str, exec_id: &str) -> Option<ExecProcess> {
        self.lock().get(&key(id, exec_id)).cloned()
    }

    /// Removing wakes waiters, who then report the exec gone instead of blocking forever.
    pub fn remove(&self, id: &str, exec_id: &str) -> Option<ExecProcess> {
        let removed = self.lock().remove(&key(id, exec_id));
        self.exited.notify_all();
        removed
    }

    /// Removes every exec of container `id`.
    pub fn remove_all(&self, id: &str) {
        self.lock().retain(|(cid, _), _| cid != id);
        self.exited.notify_all();
    }

    /// An exec whose start failed never runs: give it an exit so `Wait` (which containerd
    /// calls before `Start`) returns.
    pub fn set_failed(&self, id: &str, exec_id: &str, code: u32) {
        if let Some(exec) = self.lock().get_mut(&key(id, exec_id)) {
            exec.status = Status::STOPPED;
            exec.exit = Some(Exit {
                code,
                at: SystemTime::now(),
            });
        }
        self.exited.notify_all();
    }

    /// Records the started pid. An exit the reaper saw before this (a short exec) is parked in
    /// the task table's unclaimed exits; holding our lock across both closes the race with
    /// [`Execs::record_exit`].
    pub fn set_started(
        &self,
        id: &str,
        exec_id: &str,
        pid: i32,
        tasks: &Tasks,
    ) -> Option<ExecProcess> {
        let mut map = self.lock();
        let exec = map.get_mut(&key(id, exec_id))?;
        exec.pid = pid;
        exec.status = Status::RUNNING;
        if let Some(exit) = tasks.take_unclaimed(pid) {
            exec.status = Status::STOPPED;
            exec.exit = Some(exit);
        }
        let exec = exec.clone();
        drop(map);
        self.exited.notify_all();
        Some(exec)
    }

    /// Records the exit of `pid` if it is an exec; otherwise passes it on to the task table.
    /// Returns the exec that exited, or the task, for the caller to publish.
    pub fn record_exit(&self, pid: i32, code: i32, tasks: &Tasks) -> Exited {
        let mut map = self.lock();
        let found = map.values_mut().find(|e| e.pid == pid && e.exit.is_none());
        if let Some(exec) = found {
            exec.status = Status::STOPPED;
            exec.exit = Some(Exit {
                code: code as u32,
                at: SystemTime::now(),
            });
            let exec = exec.clone();
            drop(map);
            self.exited.notify_all();
            return Exited::Exec(exec);
        }
        let task = tasks.record_exit(pid, code);
        drop(map);
        task.map_or(Exited::Unknown, Exited::Task)
    }

    pub fn wait_exit(&self, id: &str, exec_id: &str) -> Option<Exit> {
        let mut map = self.lock();
        loop {
            match map.get(&key(id, exec_id)) {
                None => return None,
                Some(ExecProcess { exit: Some(e), .. }) => return Some(e.clone()),
                Some(_) => {}
            }
            map = self.exited.wait(map).unwrap_or_else(|p| p.into_inner());
        }
    }
}

pub enum Exited {
    Task(crate::tasks::Task),
    Exec(ExecProcess),
    Unknown,
}
