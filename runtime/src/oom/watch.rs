//! Watching memory cgroups for the kernel's OOM killer while their containers run, so `TaskOOM`
//! is published when a process of a container is killed, not only when the container ends.
//!
//! One [`OomWatcher`] serves every container of a shim: one epoll descriptor, one thread in
//! [`OomWatcher::run`], and one descriptor per watched cgroup:
//! - cgroup v1: an eventfd registered through `cgroup.event_control` for `memory.oom_control`;
//!   the kernel signals it on every OOM event in the cgroup (and when the cgroup is removed).
//! - cgroup v2: an inotify watch on `memory.events`, which the kernel modifies on each event.
//!
//! A v1 OOM event is signalled before the OOM killer picks its victim (and also when nothing is
//! killed, e.g. with `oom_kill_disable`), so a wake-up only triggers reading the cgroup's
//! `oom_kill` counter, again a few times over the next `RECHECK_AFTER` delays when it has not grown
//! yet. The callback gets the counter each time it grows.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// When to read the counter again after a wake-up that found no new kill, counted from the
/// wake-up: the kill follows the v1 event within microseconds, and all of these are within
/// the second containerd's users expect the event in.
const RECHECK_AFTER: [Duration; 5] = [
    Duration::from_millis(5),
    Duration::from_millis(20),
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(700),
];

/// Where a container's memory cgroup keeps its OOM kill counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryCgroup {
    /// A cgroup v1 memory controller directory (`memory.oom_control`, `cgroup.event_control`).
    V1(PathBuf),
    /// A cgroup v2 directory (`memory.events`).
    V2(PathBuf),
}

impl MemoryCgroup {
    /// The file whose `oom_kill` line counts the cgroup's OOM kills.
    pub fn counter_file(&self) -> PathBuf {
        match self {
            MemoryCgroup::V1(dir) => dir.join("memory.oom_control"),
            MemoryCgroup::V2(dir) => dir.join("memory.events"),
        }
    }

    /// How many processes of the cgroup the kernel's OOM killer has killed.
    pub fn oom_kills(&self) -> std::io::Result<u64> {
        Ok(oom_kill_count(&std::fs::read_to_string(
            self.counter_file(),
        )?))
    }
}

/// The `oom_kill N` line of `memory.oom_control` / `memory.events`; 0 when absent (kernels
/// before 4.13 have no such line in v1).
pub(crate) fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Why a cgroup could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The watcher's own epoll descriptor could not be created.
    #[error("creating the OOM watcher's epoll: {0}")]
    Epoll(#[source] Errno),
    /// The cgroup's notification could not be set up.
    #[error("watching {path} for OOM kills: {reason}")]
    Register {
        /// The cgroup file or directory concerned.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// This id is watched already.
    #[error("container {0} is watched for OOM kills already")]
    AlreadyWatched(String),
}

fn register_error(path: &Path, reason: impl std::fmt::Display) -> WatchError {
    WatchError::Register {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The descriptor that wakes the watcher for one cgroup.
enum Source {
    EventFd(EventFd),
    Inotify(Inotify),
}

impl Source {
    fn open(cgroup: &MemoryCgroup) -> Result<Self, WatchError> {
        match cgroup {
            MemoryCgroup::V1(dir) => register_v1(dir).map(Source::EventFd),
            MemoryCgroup::V2(dir) => {
                let file = dir.join("memory.events");
                let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                    .map_err(|e| register_error(&file, e))?;
                inotify
                    .add_watch(&file, AddWatchFlags::IN_MODIFY)
                    .map_err(|e| register_error(&file, e))?;
                Ok(Source::Inotify(inotify))
            }
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Source::EventFd(fd) => fd.as_fd(),
            Source::Inotify(fd) => fd.as_fd(),
        }
    }

    /// Consumes what woke us so the level-triggered epoll does not report it again.
    fn drain(&self) {
        let _ = match self {
            Source::EventFd(fd) => fd.read().map(drop),
            Source::Inotify(fd) => fd.read_events().map(drop),
        };
    }
}

/// cgroup v1 OOM notification: "<eventfd> <fd of memory.oom_control>" written to
/// `cgroup.event_control`. The kernel keeps its own references; only the eventfd stays open.
fn register_v1(dir: &Path) -> Result<EventFd, WatchError> {
    let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(|e| register_error(dir, format!("eventfd: {e}")))?;
    let control_path = dir.join("memory.oom_control");
    let control = File::open(&control_path).map_err(|e| register_error(&control_path, e))?;
    let line = format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd());
    let event_control = dir.join("cgroup.event_control");
    OpenOptions::new()
        .write(true)
        .open(&event_control)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| register_error(&event_control, e))?;
    Ok(eventfd)
}

struct Watched {
    id: String,
    cgroup: MemoryCgroup,
    source: Source,
    /// The counter when it was last read.
    seen: u64,
    /// After a wake-up without a new kill: when it happened and how many re-reads are done.
    recheck: Option<(Instant, usize)>,
}

impl Watched {
    /// Reads the counter; returns it when it grew since the last read.
    fn grown(&mut self) -> Option<u64> {
        match self.cgroup.oom_kills() {
            Ok(kills) if kills > self.seen => {
                self.seen = kills;
                Some(kills)
            }
            Ok(_) => None,
            Err(e) => {
                // Also what a removed cgroup's last v1 notification leads to.
                tracing::debug!(id = %self.id, error = %e, "reading the OOM kill counter");
                None
            }
        }
    }

    /// The next re-read's time, if one is due at all.
    fn recheck_at(&self) -> Option<Instant> {
        let (woken, done) = self.recheck?;
        RECHECK_AFTER.get(done).map(|after| woken + *after)
    }
}

#[derive(Default)]
struct Inner {
    next_token: u64,
    by_token: HashMap<u64, Watched>,
    tokens: HashMap<String, u64>,
}

/// Watches containers' memory cgroups and reports OOM kills as they happen; see the module
/// documentation.
pub struct OomWatcher {
    epoll: Epoll,
    inner: Mutex<Inner>,
}

impl OomWatcher {
    /// A watcher with nothing to watch yet; [`OomWatcher::run`] serves it on a thread.
    pub fn new() -> Result<Self, WatchError> {
        Ok(OomWatcher {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(WatchError::Epoll)?,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent; a panic elsewhere does not poison them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching `cgroup` for container `id`. Returns the kill count now: kills up to it
    /// are not reported.
    pub fn watch(&self, id: &str, cgroup: MemoryCgroup) -> Result<u64, WatchError> {
        let mut inner = self.lock();
        if inner.tokens.contains_key(id) {
            return Err(WatchError::AlreadyWatched(id.to_string()));
        }
        let source = Source::open(&cgroup)?;
        // Read after registering, so no kill falls between the two.
        let seen = cgroup
            .oom_kills()
            .map_err(|e| register_error(&cgroup.counter_file(), e))?;
        let token = inner.next_token;
        self.epoll
            .add(source.fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(|e| register_error(&cgroup.counter_file(), format!("epoll: {e}")))?;
        inner.next_token += 1;
        inner.tokens.insert(id.to_string(), token);
        inner.by_token.insert(
            token,
            Watched {
                id: id.to_string(),
                cgroup,
                source,
                seen,
                recheck: None,
            },
        );
        Ok(seen)
    }

    /// Stops watching container `id` and closes its descriptor; nothing when it is not watched.
    pub fn unwatch(&self, id: &str) {
        let mut inner = self.lock();
        let Some(token) = inner.tokens.remove(id) else {
            return;
        };
        if let Some(watched) = inner.by_token.remove(&token) {
            if let Err(e) = self.epoll.delete(watched.source.fd()) {
                tracing::debug!(id, error = %e, "removing an OOM watch from epoll");
            }
        }
    }

    /// How many containers are watched.
    pub fn len(&self) -> usize {
        self.lock().tokens.len()
    }

    /// True when no container is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serves the watches forever: calls `on_kill(id, kills)` each time container `id`'s OOM
    /// kill counter grows, with the new count. `on_kill` runs on this thread, without the
    /// watcher's lock held.
    pub fn run(&self, mut on_kill: impl FnMut(&str, u64)) -> ! {
        let mut events = [EpollEvent::empty(); 32];
        loop {
            let n = match self.epoll.wait(&mut events, self.timeout()) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for OOM events");
                    std::thread::sleep(Duration::from_millis(100));
                    0
                }
            };
            let tokens: Vec<u64> = events[..n].iter().map(EpollEvent::data).collect();
            for (id, kills) in self.check(&tokens) {
                on_kill(&id, kills);
            }
        }
    }

    /// How long epoll may sleep: until the nearest re-read, else for ever.
    fn timeout(&self) -> EpollTimeout {
        let inner = self.lock();
        let Some(next) = inner
            .by_token
            .values()
            .filter_map(Watched::recheck_at)
            .min()
        else {
            return EpollTimeout::NONE;
        };
        let wait = next.saturating_duration_since(Instant::now());
        // Round up, so a re-read never comes a millisecond early and spins.
        let ms = wait.as_micros().div_ceil(1000);
        EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
    }

    /// Handles the wake-ups of `woken` and the re-reads that are due; returns the grown
    /// counters.
    fn check(&self, woken: &[u64]) -> Vec<(String, u64)> {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut grown = Vec::new();
        for token in woken {
            // A token of a watch removed since epoll returned: nothing to do.
            let Some(watched) = inner.by_token.get_mut(token) else {
                continue;
            };
            watched.source.drain();
            match watched.grown() {
                Some(kills) => {
                    watched.recheck = None;
                    grown.push((watched.id.clone(), kills));
                }
                None => watched.recheck = Some((now, 0)),
            }
        }
        for watched in inner.by_token.values_mut() {
            if watched.recheck_at().is_none_or(|at| at > now) {
                continue;
            }
            if let Some((_, done)) = &mut watched.recheck {
                *done += 1;
            }
            if let Some(kills) = watched.grown() {
                watched.recheck = None;
                grown.push((watched.id.clone(), kills));
            }
        }
        grown
    }
}

#[cfg(test)]
mod tests;
