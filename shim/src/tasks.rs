//! The shim's table of containers: state, pid and exit status, and waiting for an exit.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim::api::Status;
use wasmpod_runtime::oom::OomReport;

#[derive(Debug, Clone)]
pub struct Exit {
    pub code: u32,
    pub at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub bundle: PathBuf,
    pub pid: i32,
    pub status: Status,
    pub exit: Option<Exit>,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    /// The rootfs we mounted and must unmount on delete.
    pub mounted_rootfs: Option<PathBuf>,
    /// The executor's memory-limit report (see `wasmpod_runtime::oom`).
    pub oom_report: Option<Arc<OomReport>>,
    /// What its OpenTelemetry spans carry (empty when export is off).
    pub trace: crate::otel::TaskTrace,
}

/// Exits of pids we have no task for (yet): a container that dies between `Create`
/// returning its pid and the task being recorded. Bounded; old entries are dropped.
const MAX_UNCLAIMED: usize = 1024;

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, Task>,
    unclaimed: Vec<(i32, Exit)>,
    /// Tasks between [`Tasks::begin_start`] and [`Tasks::finish_start`] (their TaskExit waits
    /// for their TaskStart), and whether an exit was held back meanwhile.
    starting: HashMap<String, bool>,
    /// Ids reserved by a `Create` in flight (see [`Tasks::reserve`]).
    creating: HashSet<String>,
    /// Tasks whose exit is recorded but whose TaskExit is not published yet: `Wait` holds its
    /// answer until [`Tasks::exit_published`], so a Delete that follows it publishes TaskDelete
    /// after TaskExit.
    exit_unpublished: HashSet<String>,
}

/// An id held by one `Create` until its task is inserted or the create failed; dropping it
/// frees the id.
pub struct Reservation {
    tasks: Arc<Tasks>,
    id: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.tasks.lock().creating.remove(&self.id);
    }
}

#[derive(Default)]
pub struct Tasks {
    inner: Mutex<Inner>,
    exited: Condvar,
}

impl Tasks {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data behind: every update is a
        // single assignment.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, mut task: Task) {
        let mut inner = self.lock();
        if let Some(i) = inner.unclaimed.iter().position(|(pid, _)| *pid == task.pid) {
            let (_, exit) = inner.unclaimed.remove(i);
            task.status = Status::STOPPED;
            task.exit = Some(exit);
        }
        inner.tasks.insert(task.id.clone(), task);
    }

    pub fn get(&self, id: &str) -> Option<Task> {
        self.lock().tasks.get(id).cloned()
    }

    /// Reserves `id` for one `Create`, before it does any work; `None` when a task of that id
    /// exists or another `Create` holds it. The loser of two concurrent `Create`s of one id thus
    /// fails before it touches anything, and so cannot undo the winner's container.
    pub fn reserve(self: &Arc<Self>, id: &str) -> Option<Reservation> {
        let mut inner = self.lock();
        if inner.tasks.contains_key(id) || !inner.creating.insert(id.to_string()) {
            return None;
        }
        Some(Reservation {
            tasks: self.clone(),
            id: id.to_string(),
        })
    }

    /// Removing wakes waiters, who then report the task gone instead of blocking forever.
    pub fn remove(&self, id: &str) -> Option<Task> {
        let mut inner = self.lock();
        inner.exit_unpublished.remove(id);
        let removed = inner.tasks.remove(id);
        drop(inner);
        self.exited.notify_all();
        removed
    }

    pub fn is_empty(&self) -> bool {
        self.lock().tasks.is_empty()
    }

    /// Marks a created task running, unless it already exited.
    pub fn set_running(&self, id: &str) {
        if let Some(t) = self.lock().tasks.get_mut(id) {
            if t.exit.is_none() {
                t.status = Status::RUNNING;
            }
        }
    }

    /// Sets the status of a task that has not exited (an exit always wins: STOPPED stays).
    /// Returns the updated task, `None` when it does not exist or already exited.
    pub fn set_status(&self, id: &str, status: Status) -> Option<Task> {
        let mut inner = self.lock();
        let task = inner.tasks.get_mut(id).filter(|t| t.exit.is_none())?;
        task.status = status;
        Some(task.clone())
    }

    /// Marks task `id` as being started. A guest may exit as soon as it is released, before
    /// its starter has published TaskStart; until [`Tasks::finish_start`], its exit is recorded
    /// but [`Tasks::record_exit`] leaves the TaskExit to the starter.
    pub fn begin_start(&self, id: &str) {
        self.lock().starting.insert(id.to_string(), false);
    }

    /// Ends the start of `id`; returns the task when it exited meanwhile: its TaskExit, held
    /// back by [`Tasks::record_exit`], is now the caller's to publish (after TaskStart).
    pub fn finish_start(&self, id: &str) -> Option<Task> {
        let mut inner = self.lock();
        let held_back = inner.starting.remove(id).unwrap_or(false);
        held_back.then(|| inner.tasks.get(id).cloned()).flatten()
    }

    /// Records the exit of `pid`; returns the task it belonged to, whose TaskExit the caller
    /// publishes, then calls [`Tasks::exit_published`]. `None` for a pid of no task, and for a
    /// task being started (see [`Tasks::begin_start`]: its starter publishes).
    pub fn record_exit(&self, pid: i32, code: i32) -> Option<Task> {
        let exit = Exit {
            code: code as u32,
            at: SystemTime::now(),
        };
        let mut inner = self.lock();
        let Inner {
            tasks,
            unclaimed,
            starting,
            exit_unpublished,
            ..
        } = &mut *inner;
        let found = tasks
            .values_mut()
            .find(|t| t.pid == pid && t.exit.is_none());
        let result = match found {
            Some(task) => {
                task.status = Status::STOPPED;
                task.exit = Some(exit);
                exit_unpublished.insert(task.id.clone());
                match starting.get_mut(&task.id) {
                    Some(held_back) => {
                        *held_back = true;
                        None
                    }
                    None => Some(task.clone()),
                }
            }
            None => {
                if unclaimed.len() >= MAX_UNCLAIMED {
                    unclaimed.remove(0);
                }
                unclaimed.push((pid, exit));
                None
            }
        };
        drop(inner);
        self.exited.notify_all();
        result
    }

    /// Takes the exit of `pid` if it arrived before anyone claimed it.
    pub fn take_unclaimed(&self, pid: i32) -> Option<Exit> {
        let mut inner = self.lock();
        let i = inner.unclaimed.iter().position(|(p, _)| *p == pid)?;
        Some(inner.unclaimed.remove(i).1)
    }

    /// The TaskExit of `id` is out: its `Wait`s may answer now.
    pub fn exit_published(&self, id: &str) {
        self.lock().exit_unpublished.remove(id);
        self.exited.notify_all();
    }

    /// Blocks until the task has exited and its TaskExit is published; `None` if it does not
    /// exist (anymore).
    pub fn wait_exit(&self, id: &str) -> Option<Exit> {
        let mut inner = self.lock();
        loop {
            match inner.tasks.get(id) {
                None => return None,
                Some(Task { exit: Some(e), .. }) if !inner.exit_unpublished.contains(id) => {
                    return Some(e.clone())
                }
                Some(_) => {}
            }
            inner = self.exited.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_during_start_is_left_to_the_starter() {
        let tasks = Tasks::default();
        tasks.insert(task("quick", 41));
        tasks.begin_start("quick");
        assert!(
            tasks.record_exit(41, 0).is_none(),
            "TaskExit before TaskStart"
        );
        assert!(
            tasks.take_unclaimed(41).is_none(),
            "a task's exit is not unclaimed"
        );
        let exited = tasks
            .finish_start("quick")
            .expect("the exit, for the starter");
        assert_eq!(exited.exit.map(|e| e.code), Some(0));
        assert_eq!(exited.status, Status::STOPPED);

        tasks.insert(task("slow", 42));
        tasks.begin_start("slow");
        assert!(tasks.finish_start("slow").is_none());
        assert!(
            tasks.record_exit(42, 3).is_some(),
            "after the start, the reaper publishes"
        );

        // Dead before its start: the reaper published its exit, the starter must not again.
        tasks.insert(task("dead", 43));
        assert!(tasks.record_exit(43, 137).is_some());
        tasks.begin_start("dead");
        assert!(tasks.finish_start("dead").is_none());
    }

    #[test]
    fn an_id_is_reserved_by_one_create_at_a_time() {
        let tasks = Arc::new(Tasks::default());
        let first = tasks.reserve("c").expect("a free id");
        assert!(tasks.reserve("c").is_none(), "reserved twice");
        assert!(tasks.reserve("other").is_some());
        tasks.insert(task("c", 7));
        drop(first);
        assert!(tasks.reserve("c").is_none(), "a task of that id exists");
        tasks.remove("c");
        let again = tasks.reserve("c");
        assert!(again.is_some(), "free again after its task is gone");
        drop(again);
        // A failed create frees the id.
        drop(tasks.reserve("d"));
        assert!(tasks.reserve("d").is_some());
    }

    fn task(id: &str, pid: i32) -> Task {
        Task {
            id: id.into(),
            bundle: PathBuf::new(),
            pid,
            status: Status::CREATED,
            exit: None,
            stdin: String::new(),
            stdout: String::new(),
            stderr: String::new(),
            mounted_rootfs: None,
            oom_report: None,
            trace: Default::default(),
        }
    }

    #[test]
    fn wait_returns_after_exit_recorded() {
        let tasks = Arc::new(Tasks::default());
        tasks.insert(task("a", 10));
        let t2 = tasks.clone();
        let waiter = std::thread::spawn(move || t2.wait_exit("a"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(tasks.record_exit(10, 143).map(|t| t.id), Some("a".into()));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "Wait answered before TaskExit was out"
        );
        tasks.exit_published("a");
        assert_eq!(waiter.join().unwrap().map(|e| e.code), Some(143));
    }

    #[test]
    fn set_status_does_not_override_an_exit() {
        let tasks = Tasks::default();
        tasks.insert(task("c", 12));
        tasks.set_running("c");
        let paused = tasks.set_status("c", Status::PAUSED).map(|t| t.status);
        assert_eq!(paused, Some(Status::PAUSED));
        tasks.record_exit(12, 137);
        assert!(tasks.set_status("c", Status::RUNNING).is_none());
        assert_eq!(tasks.get("c").unwrap().status, Status::STOPPED);
        assert!(tasks.set_status("nope", Status::PAUSED).is_none());
    }

    #[test]
    fn exit_before_insert_is_claimed() {
        let tasks = Tasks::default();
        assert!(tasks.record_exit(11, 1).is_none());
        tasks.insert(task("b", 11));
        let t = tasks.get("b").unwrap();
        assert_eq!(t.status, Status::STOPPED);
        assert_eq!(t.exit.map(|e| e.code), Some(1));
    }
}
