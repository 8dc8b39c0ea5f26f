//! Node-wide compile slots: at most `jobs` compiles run at once across every shim of the node.
//! A slot is an exclusive `flock` on one of `jobs` files in a root-only directory; the kernel
//! releases it when the holder closes the file or dies, so a killed shim never keeps a slot.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a waiting compile looks for a free slot.
const POLL: Duration = Duration::from_millis(25);

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    _file: File,
    pub index: usize,
    /// How long the compile waited for it.
    pub waited: Duration,
}

/// Takes a free slot of `dir`, waiting as long as all `jobs` are held.
pub fn acquire(dir: &Path, jobs: usize) -> std::io::Result<Slot> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let files = (0..jobs.max(1))
        .map(|i| open_slot(&dir.join(format!("slot-{i}"))))
        .collect::<std::io::Result<Vec<_>>>()?;
    let started = Instant::now();
    let mut logged = false;
    loop {
        for (index, file) in files.iter().enumerate() {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                let file = file.try_clone()?;
                return Ok(Slot {
                    _file: file,
                    index,
                    waited: started.elapsed(),
                });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err);
            }
        }
        if !logged {
            tracing::info!(jobs, "all compile slots of the node are busy; waiting");
            logged = true;
        }
        std::thread::sleep(POLL);
    }
}

fn open_slot(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_serialises_and_a_dropped_slot_is_free_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), 1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let slot = acquire(&path, 1).unwrap();
            tx.send(slot.waited).unwrap();
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            rx.try_recv().is_err(),
            "second compile got a slot while the first held it"
        );
        drop(first);
        let waited = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        waiter.join().unwrap();
    }

    #[test]
    fn two_jobs_run_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = acquire(dir.path(), 2).unwrap();
        let b = acquire(dir.path(), 2).unwrap();
        assert_ne!(a.index, b.index);
    }
}
