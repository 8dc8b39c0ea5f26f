//! One node-wide lock serialising the moments a shim group gains or loses its daemon: `start`
//! (find or spawn), a daemon's decision to exit, and `delete` removing a dead socket. Without
//! it, concurrent starts of one pod each spawn a daemon, and a daemon could exit just after a
//! `start` handed its address to containerd.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

const LOCK_FILE: &str = "/run/wasmpod/start.lock";

pub struct StartLock {
    _lock: Flock<File>,
}

pub fn acquire() -> std::io::Result<StartLock> {
    if let Some(dir) = Path::new(LOCK_FILE).parent() {
        // wasmpod's state lives below: never writable by others, whatever containerd's umask.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(LOCK_FILE)?;
    let lock =
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
    Ok(StartLock { _lock: lock })
}

/// Whether a process accepts connections on the unix socket `address`.
pub fn is_listening(address: &str) -> bool {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    std::os::unix::net::UnixStream::connect(path).is_ok()
}
