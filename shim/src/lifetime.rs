//! When the daemon may exit. containerd sends `Shutdown` after deleting each task; the daemon
//! leaves only when it is idle: no task, no `Create` in flight, and no recent reservation by a
//! `start` that handed our address to containerd. The decision is taken under the node-wide
//! start lock, and the socket is removed before the lock is released, so a concurrent `start`
//! either reserves us in time or finds no socket and spawns a new daemon.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_shim::ExitSignal;

use crate::start_lock;
use crate::tasks::Tasks;

/// How long a reservation by `start` keeps an idle daemon alive.
const RESERVATION: Duration = Duration::from_secs(2);
/// How often an idle daemon re-checks whether it may exit.
const IDLE_CHECK: Duration = Duration::from_millis(200);

pub struct Lifetime {
    pending_creates: AtomicUsize,
    reserved_at: Mutex<Instant>,
    closing: AtomicBool,
    exit_scheduled: AtomicBool,
    socket: String,
    exit: Arc<ExitSignal>,
}

/// A `Create` in flight; the daemon does not exit while one exists.
pub struct CreateGuard<'a>(&'a Lifetime);

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        self.0.pending_creates.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Lifetime {
    pub fn new(socket: &str, exit: Arc<ExitSignal>) -> Self {
        Self {
            pending_creates: AtomicUsize::new(0),
            reserved_at: Mutex::new(Instant::now()),
            closing: AtomicBool::new(false),
            exit_scheduled: AtomicBool::new(false),
            socket: socket.to_string(),
            exit,
        }
    }

    /// A `start` is about to hand our address to containerd.
    pub fn reserve(&self) {
        *self.reserved_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// `None` when the daemon is already on its way out.
    pub fn begin_create(&self) -> Option<CreateGuard<'_>> {
        self.pending_creates.fetch_add(1, Ordering::SeqCst);
        let guard = CreateGuard(self);
        (!self.closing.load(Ordering::SeqCst)).then_some(guard)
    }

    fn idle(&self, tasks: &Tasks) -> bool {
        tasks.is_empty() && self.pending_creates.load(Ordering::SeqCst) == 0
    }

    /// Called on `Shutdown`: starts watching for the moment the daemon may exit.
    pub fn exit_when_idle(self: &Arc<Self>, tasks: Arc<Tasks>) {
        if !self.idle(&tasks) || self.exit_scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("idle-exit".into())
            .spawn(move || this.watch(&tasks));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the idle-exit thread");
            self.exit_scheduled.store(false, Ordering::SeqCst);
        }
    }

    fn watch(&self, tasks: &Tasks) {
        loop {
            std::thread::sleep(IDLE_CHECK);
            let lock = start_lock::acquire();
            if let Err(e) = &lock {
                tracing::warn!(error = %e, "start lock unavailable; exiting without it");
            }
            if !self.idle(tasks) {
                self.exit_scheduled.store(false, Ordering::SeqCst);
                return;
            }
            let reserved = self
                .reserved_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed();
            if reserved < RESERVATION {
                continue;
            }
            self.closing.store(true, Ordering::SeqCst);
            let path = self.socket.strip_prefix("unix://").unwrap_or(&self.socket);
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(error = %e, "removing shim socket");
            }
            drop(lock);
            tracing::info!("no containers left, shim exits");
            self.exit.signal();
            return;
        }
    }
}
