//! The terminals of the shim's processes (`terminal: true`), keyed by (container, exec id; empty
//! for the init): each has its pty master, for `ResizePty`, and a thread copying between it and
//! containerd's FIFOs (see `pty_copy`). The exit of a process waits for its copy to drain
//! ([`Consoles::finish`]) before its exit event goes out, so its last output is not lost.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::pty_copy::{self, Ends};

struct Console {
    master: Arc<File>,
    /// Dropping it tells the copy to drain and end.
    stop: OwnedFd,
    copy: JoinHandle<()>,
}

type Key = (String, String);

/// The shim's terminals.
#[derive(Default)]
pub struct Consoles {
    inner: Mutex<HashMap<Key, Console>>,
}

fn key(id: &str, exec_id: &str) -> Key {
    (id.to_string(), exec_id.to_string())
}

/// Opens a FIFO (or file) non-blocking. The stdout FIFO read-write, as for a process without a
/// terminal: it then always has a reader, so no write fails while containerd restarts.
fn open(path: &str, write: bool) -> std::io::Result<Option<File>> {
    if path.is_empty() {
        return Ok(None);
    }
    let mut opts = OpenOptions::new();
    opts.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC);
    if write {
        opts.read(true).write(true);
    } else {
        opts.read(true);
    }
    opts.open(Path::new(path)).map(Some)
}

fn set_nonblocking(file: &File) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(
        file.as_raw_fd(),
        FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

impl Consoles {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Console>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts copying between `master` and containerd's `stdin`/`stdout` FIFOs (empty: none).
    pub fn attach(
        &self,
        id: &str,
        exec_id: &str,
        master: OwnedFd,
        stdin: &str,
        stdout: &str,
    ) -> std::io::Result<()> {
        let master = File::from(master);
        set_nonblocking(&master)?;
        let master = Arc::new(master);
        let (stop_read, stop) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let ends = Ends {
            master: master.try_clone()?,
            stdin: open(stdin, false)?,
            stdout: open(stdout, true)?,
            stop: stop_read,
        };
        let copy = std::thread::Builder::new()
            .name(format!("tty-{id}"))
            .spawn(move || pty_copy::run(ends))?;
        let previous = self
            .lock()
            .insert(key(id, exec_id), Console { master, stop, copy });
        if let Some(previous) = previous {
            end(previous);
        }
        Ok(())
    }

    /// Sets the window size of the process's terminal; `false` when it has none.
    pub fn resize(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> std::io::Result<bool> {
        let Some(master) = self.lock().get(&key(id, exec_id)).map(|c| c.master.clone()) else {
            return Ok(false);
        };
        let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
        wasmpod_runtime::console::resize(master.as_fd(), clamp(width), clamp(height))?;
        Ok(true)
    }

    /// The process exited (or is being deleted): waits until its output is copied (bounded by
    /// the drain deadline) and closes its terminal. Nothing when it has no terminal.
    pub fn finish(&self, id: &str, exec_id: &str) {
        let console = self.lock().remove(&key(id, exec_id));
        if let Some(console) = console {
            end(console);
        }
    }

    /// Finishes every terminal of container `id` (its execs').
    pub fn finish_all(&self, id: &str) {
        let consoles: Vec<Console> = {
            let mut map = self.lock();
            let keys: Vec<Key> = map.keys().filter(|(cid, _)| cid == id).cloned().collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        consoles.into_iter().for_each(end);
    }
}

fn end(console: Console) {
    drop(console.stop);
    if console.copy.join().is_err() {
        tracing::warn!("terminal copy thread panicked");
    }
}
