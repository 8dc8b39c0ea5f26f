//! One compile of a module at a time on the node: the shims that miss the same entry at once
//! wait for the first one's compile and then find its entry, instead of each compiling it.
//!
//! The lock is an exclusive `flock` on `<entry>.lock` in the cache directory (root-only, like
//! the entries). The holder removes the file before closing it, once its entry is committed or
//! its compile failed: a shim that waited then holds a lock on the removed file and looks the
//! entry up again; a shim that comes later finds the entry. The worst a race can do is one
//! more compile, never a wrong module. The kernel drops the lock of a shim that dies.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{io, secure_dir, CacheError, EntryKey, ModuleCache};

/// How often a waiting shim tries the lock.
const POLL: Duration = Duration::from_millis(25);

/// The lock on one entry's compile; dropping it lets the waiting shims go on.
#[derive(Debug)]
pub struct CompileLock {
    file: File,
    path: PathBuf,
    /// How long this shim waited for another one's compile.
    pub waited: Duration,
}

impl Drop for CompileLock {
    fn drop(&mut self) {
        // Removed while still locked, so that nobody locks this file after us.
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

impl ModuleCache {
    /// Takes `key`'s compile lock, waiting while another shim holds it, for at most
    /// `max_wait` (then `None`: compile without it). `None` at once for a private cache.
    pub fn lock_compile(
        &self,
        key: &EntryKey,
        max_wait: Duration,
    ) -> Result<Option<CompileLock>, CacheError> {
        if !self.is_shared() {
            return Ok(None);
        }
        secure_dir::create(self.dir()).map_err(io(self.dir()))?;
        let path = self.dir().join(format!("{}.lock", key.file_name()));
        let started = Instant::now();
        let mut logged = false;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(io(&path))?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Some(CompileLock {
                    file,
                    path,
                    waited: started.elapsed(),
                }));
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(&path)(err));
            }
            if started.elapsed() >= max_wait {
                tracing::warn!(entry = %key.file_name(), waited_s = started.elapsed().as_secs(), "another shim's compile of this module takes too long; compiling it here too");
                return Ok(None);
            }
            if !logged {
                tracing::info!(entry = %key.file_name(), "another shim is compiling this module; waiting for its entry");
                logged = true;
            }
            // Reopened each time: the holder removes the file when it is done.
            drop(file);
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_locker_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::new(dir.path().join("c"));
        if !cache.is_shared() {
            return; // not root here: the cache is private and takes no lock
        }
        let key = EntryKey::for_source(b"\0asm\x01\0\0\0", "test");
        let first = cache.lock_compile(&key, Duration::ZERO).unwrap().unwrap();
        assert!(cache
            .lock_compile(&key, Duration::from_millis(100))
            .unwrap()
            .is_none());
        let lock_file = dir
            .path()
            .join("c")
            .join(format!("{}.lock", key.file_name()));
        assert!(lock_file.exists());
        let waiter = {
            let cache = ModuleCache::new(dir.path().join("c"));
            let key = key.clone();
            std::thread::spawn(move || cache.lock_compile(&key, Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(100));
        drop(first);
        let second = waiter.join().unwrap().unwrap().unwrap();
        assert!(
            second.waited >= Duration::from_millis(50),
            "{:?}",
            second.waited
        );
        drop(second);
        assert!(!lock_file.exists());
    }
}
