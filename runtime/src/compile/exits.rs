//! Exit statuses of compile processes. The shim daemon is a child subreaper whose signal thread
//! reaps every child (container inits are reparented to it), compile processes included; it
//! hands their statuses over here ([`record`]) once it has said so ([`use_external_reaper`]).
//! Without one (tests, tools), the waiter reaps its own child.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How a compile process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

#[derive(Default)]
struct Exits {
    external: bool,
    /// Registered compile processes; `Some` once reaped.
    children: HashMap<i32, Option<Exit>>,
}

static EXITS: LazyLock<Mutex<Exits>> = LazyLock::new(Mutex::default);
static REAPED: Condvar = Condvar::new();

fn exits() -> MutexGuard<'static, Exits> {
    EXITS.lock().unwrap_or_else(|p| p.into_inner())
}

/// From now on another thread reaps every child and calls [`record`].
pub fn use_external_reaper() {
    exits().external = true;
}

/// Called by the reaper for each child it reaped; true when it was a compile process.
pub fn record(pid: i32, exit: Exit) -> bool {
    let mut exits = exits();
    match exits.children.get_mut(&pid) {
        Some(slot) => {
            *slot = Some(exit);
            REAPED.notify_all();
            true
        }
        None => false,
    }
}

/// Spawns `command` and registers it before the reaper can see it exit.
pub(super) fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let mut exits = exits();
    let child = command.spawn()?;
    exits.children.insert(child.id() as i32, None);
    Ok(child)
}

/// Waits until `child` exits or `deadline` passes (`None`: still running).
pub(super) fn wait(child: &mut Child, deadline: Instant) -> Option<Exit> {
    let pid = child.id() as i32;
    loop {
        let mut exits = exits();
        if exits.external {
            if let Some(Some(exit)) = exits.children.get(&pid) {
                let exit = *exit;
                exits.children.remove(&pid);
                return Some(exit);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = REAPED.wait_timeout(exits, left.min(Duration::from_millis(100)));
            continue;
        }
        drop(exits);
        match child.try_wait() {
            Ok(Some(status)) => {
                exits_forget(pid);
                use std::os::unix::process::ExitStatusExt;
                return Some(match status.signal() {
                    Some(signal) => Exit::Signal(signal),
                    None => Exit::Code(status.code().unwrap_or(-1)),
                });
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Forgets a child that will not be waited for (it was killed and waited for by the caller).
pub(super) fn exits_forget(pid: i32) {
    exits().children.remove(&pid);
}
