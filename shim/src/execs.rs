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
    /// Execs between [`Execs::set_started`] and [`Execs::finish_start`] (their exit waits for
    /// their TaskExecStarted), and whether an exit was held back meanwhile. Locked after
    /// `inner`, never before.
    starting: Mutex<HashMap<Key, bool>>,
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
    /// [`Execs::record_exit`]. Without such an exit, the exec is starting until
    /// [`Execs::finish_start`]: an exit meanwhile is recorded, its publishing left to the
    /// starter, after TaskExecStarted.
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
        } else {
            self.lock_starting().insert(key(id, exec_id), false);
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
            let held_back = self
                .lock_starting()
                .get_mut(&key(&exec.id, &exec.exec_id))
                .map(|held| *held = true)
                .is_some();
            drop(map);
            self.exited.notify_all();
            return if held_back {
                Exited::Unknown
            } else {
                Exited::Exec(exec)
            };
        }
        let task = tasks.record_exit(pid, code);
        drop(map);
        task.map_or(Exited::Unknown, Exited::Task)
    }

    /// Ends the start of an exec; returns it when it exited meanwhile: its exit, held back by
    /// [`Execs::record_exit`], is now the caller's to publish (after TaskExecStarted).
    pub fn finish_start(&self, id: &str, exec_id: &str) -> Option<ExecProcess> {
        let map = self.lock();
        let held_back = self
            .lock_starting()
            .remove(&key(id, exec_id))
            .unwrap_or(false);
        held_back
            .then(|| map.get(&key(id, exec_id)).cloned())
            .flatten()
    }

    fn lock_starting(&self) -> MutexGuard<'_, HashMap<Key, bool>> {
        self.starting.lock().unwrap_or_else(|p| p.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(pid: i32) -> ExecProcess {
        ExecProcess {
            id: "c".into(),
            exec_id: "e".into(),
            pid,
            status: Status::CREATED,
            exit: None,
            stdin: String::new(),
            stdout: String::new(),
            stderr: String::new(),
            terminal: false,
            spec: Vec::new(),
        }
    }

    #[test]
    fn an_exit_during_start_is_left_to_the_starter() {
        let (execs, tasks) = (Execs::default(), Tasks::default());
        assert!(execs.add(exec(0)));
        let started = execs.set_started("c", "e", 50, &tasks).unwrap();
        assert!(started.exit.is_none());
        assert!(
            matches!(execs.record_exit(50, 3, &tasks), Exited::Unknown),
            "the exec's exit before its TaskExecStarted"
        );
        let exited = execs
            .finish_start("c", "e")
            .expect("the exit, for the starter");
        assert_eq!(exited.exit.map(|e| e.code), Some(3));
        assert!(execs.finish_start("c", "e").is_none(), "published once");
    }

    #[test]
    fn after_the_start_the_reaper_publishes() {
        let (execs, tasks) = (Execs::default(), Tasks::default());
        assert!(execs.add(exec(0)));
        execs.set_started("c", "e", 51, &tasks).unwrap();
        assert!(execs.finish_start("c", "e").is_none());
        assert!(matches!(execs.record_exit(51, 0, &tasks), Exited::Exec(_)));
    }

    #[test]
    fn an_exit_before_the_start_is_published_by_the_starter_once() {
        let (execs, tasks) = (Execs::default(), Tasks::default());
        assert!(execs.add(exec(0)));
        assert!(matches!(execs.record_exit(52, 1, &tasks), Exited::Unknown));
        let started = execs.set_started("c", "e", 52, &tasks).unwrap();
        assert_eq!(started.exit.map(|e| e.code), Some(1));
        assert!(execs.finish_start("c", "e").is_none());
    }
}
