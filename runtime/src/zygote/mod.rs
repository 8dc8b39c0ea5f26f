//! The zygote: a single-threaded process forked at shim start-up, before any thread exists.
//!
//! libcontainer forks and then runs Rust code in the child. Doing that from the multi-threaded
//! shim (ttrpc workers, the reaper) is undefined behaviour: another thread may hold the
//! allocator or a logger lock at fork time. So the shim never forks; it asks the zygote, which
//! forks one short-lived worker per container. Workers run concurrently, and the container's
//! init is reparented to the shim (a child subreaper) when its worker exits. A zygote that
//! dies is replaced on the next request by the shim binary executed again in zygote mode
//! (see `respawn`); a worker's failure comes back with its [`ErrorKind`].

mod prepared;
mod protocol;
mod respawn;
mod worker;

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use nix::sys::socket::{
    recv, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use nix::unistd::{fork, ForkResult, Pid};

pub use protocol::{CreateReply, CreateRequest, PreparedWorkload};
pub use respawn::{serve_inherited, ZYGOTE_ARG};

use crate::engine::WasmEngine;
use crate::ErrorKind;

/// A failure of the zygote or of the worker it forked for a container.
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    /// The zygote could not be forked.
    #[error("starting zygote: {0}")]
    Spawn(nix::Error),
    /// [`Zygote::spawn`] was called with more than one thread running.
    #[error("refusing to fork the zygote from a process with {0} threads")]
    Threaded(usize),
    /// Talking to the zygote failed (it may have died).
    #[error("zygote request failed: {0}")]
    Io(nix::Error),
    /// The zygote was gone and a fresh one could not be started.
    #[error("starting a fresh zygote: {0}")]
    Respawn(std::io::Error),
    /// The zygote's reply made no sense.
    #[error("zygote protocol: {0}")]
    Protocol(String),
    /// The worker ended without saying how the container's creation went.
    #[error("container worker exited without a reply (see the shim log)")]
    NoReply,
    /// The worker could not create the container: its error chain, and what kind of failure
    /// it was (the worker's, libcontainer's or the engine's classification).
    #[error("{message}")]
    Create {
        /// How the shim reports it.
        kind: ErrorKind,
        /// The error chain, as the user reads it.
        message: String,
    },
}

impl ZygoteError {
    /// The kind of this failure: a zygote that cannot be reached is unavailable (the next
    /// request gets a fresh one), a worker's failure keeps the kind it sent.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Spawn(_) | Self::Io(_) | Self::Respawn(_) => ErrorKind::Unavailable,
            Self::Threaded(_) | Self::Protocol(_) | Self::NoReply => ErrorKind::Internal,
            Self::Create { kind, .. } => *kind,
        }
    }
}

/// A container's init, as a zygote worker created it.
#[derive(Debug, Clone, Copy)]
pub struct Spawned {
    pub pid: i32,
    /// The wasm module was already loaded in the zygote, so nothing was loaded for this one.
    pub module_reused: bool,
}

/// The shim's handle on its zygote. The zygote may die (an OOM kill, an operator's SIGKILL):
/// containers it made are the shim's children by then and keep running, and the next request
/// that finds it gone starts a fresh one (see `respawn`) and goes there instead.
pub struct Zygote {
    current: Mutex<Handle>,
    /// Replaced zygotes not reaped yet (see [`Zygote::is_zygote_exit`]).
    retired: Mutex<Vec<Pid>>,
}

/// One zygote process and our end of its socket.
#[derive(Clone)]
struct Handle {
    socket: Arc<OwnedFd>,
    pid: Pid,
    /// Counts replacements: a request that failed on generation `n` replaces it only if no
    /// other request has already.
    generation: u64,
    /// Its exit was reaped (see [`Zygote::is_zygote_exit`]).
    reaped: bool,
}

fn seqpacket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

impl Zygote {
    /// Forks the zygote. Call only while the process is single-threaded, i.e. first in `main`.
    pub fn spawn<E: WasmEngine>() -> Result<Self, ZygoteError> {
        let threads = worker::threads_of_self();
        if threads != 1 {
            return Err(ZygoteError::Threaded(threads));
        }
        let (ours, theirs) = seqpacket_pair().map_err(ZygoteError::Spawn)?;
        // SAFETY: the caller guarantees a single-threaded process.
        match unsafe { fork() }.map_err(ZygoteError::Spawn)? {
            ForkResult::Child => {
                drop(ours);
                worker::serve::<E>(theirs, worker::Parent::Forked)
            }
            ForkResult::Parent { child } => Ok(Self {
                current: Mutex::new(Handle {
                    socket: Arc::new(ours),
                    pid: child,
                    generation: 0,
                    reaped: false,
                }),
                retired: Mutex::new(Vec::new()),
            }),
        }
    }

    fn current(&self) -> Handle {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The zygote's process id (the current one's, after a replacement).
    pub fn pid(&self) -> Pid {
        self.current().pid
    }

    /// Whether the exit of child `pid` is a zygote's, the current one or a replaced one (each
    /// is answered once), rather than a container's.
    pub fn is_zygote_exit(&self, pid: Pid) -> bool {
        {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if pid == current.pid && !current.reaped {
                current.reaped = true;
                return true;
            }
        }
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        let before = retired.len();
        retired.retain(|p| *p != pid);
        retired.len() != before
    }

    /// Replaces zygote generation `dead` with a fresh one, unless another request did already;
    /// returns the zygote to use now.
    fn replace(&self, dead: &Handle) -> Result<Handle, ZygoteError> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.generation != dead.generation {
            return Ok(current.clone());
        }
        let (socket, pid) = respawn::exec_zygote().map_err(ZygoteError::Respawn)?;
        tracing::warn!(
            old = dead.pid.as_raw(),
            zygote = pid.as_raw(),
            "the zygote is gone; started a fresh one"
        );
        if !current.reaped {
            self.retired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(current.pid);
        }
        *current = Handle {
            socket: Arc::new(socket),
            pid,
            generation: dead.generation + 1,
            reaped: false,
        };
        Ok(current.clone())
    }

    /// Creates a container through a zygote worker. `oom_report` (see [`crate::oom`]) is passed
    /// on to the container's init. A zygote found dead is replaced, and the request sent to
    /// the fresh one.
    pub fn create(
        &self,
        request: &CreateRequest,
        oom_report: Option<BorrowedFd<'_>>,
    ) -> Result<Spawned, ZygoteError> {
        let body = serde_json::to_vec(request).map_err(|e| ZygoteError::Protocol(e.to_string()))?;
        let (reply_ours, reply_theirs) = seqpacket_pair().map_err(ZygoteError::Io)?;
        let mut fds = vec![reply_theirs.as_raw_fd()];
        fds.extend(oom_report.map(|fd| fd.as_raw_fd()));
        let zygote = self.current();
        if let Err(e) = send_request(&zygote, &body, &fds) {
            if !respawn::is_gone(e) {
                return Err(ZygoteError::Io(e));
            }
            let fresh = self.replace(&zygote)?;
            send_request(&fresh, &body, &fds).map_err(ZygoteError::Io)?;
        }
        // Only the worker may hold the write side now, so a dead worker reads as EOF.
        drop(reply_theirs);

        let mut buf = vec![0u8; protocol::MAX_MESSAGE];
        let n = loop {
            match recv(reply_ours.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::Error::EINTR) => continue,
                other => break other.map_err(ZygoteError::Io)?,
            }
        };
        if n == 0 {
            return Err(ZygoteError::NoReply);
        }
        match serde_json::from_slice(&buf[..n]).map_err(|e| ZygoteError::Protocol(e.to_string()))? {
            CreateReply::Created { pid, module_reused } => Ok(Spawned { pid, module_reused }),
            CreateReply::Failed { kind, error } => Err(ZygoteError::Create {
                kind,
                message: error,
            }),
        }
    }
}

/// Sends one request with its descriptors; a zygote that is gone fails with `EPIPE` (never
/// `SIGPIPE`).
fn send_request(zygote: &Handle, body: &[u8], fds: &[RawFd]) -> nix::Result<usize> {
    sendmsg::<()>(
        zygote.socket.as_raw_fd(),
        &[IoSlice::new(body)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
}

/// A request as the zygote receives it.
pub(super) struct Received {
    pub body: Vec<u8>,
    /// Where the reply goes.
    pub reply: Option<OwnedFd>,
    /// For the container's init: see [`crate::oom`].
    pub oom_report: Option<OwnedFd>,
}

/// Receives one request and the descriptors passed with it: the reply socket, then optionally
/// the OOM report.
fn receive(socket: &OwnedFd) -> nix::Result<Option<Received>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use std::os::fd::FromRawFd;
    let mut buf = vec![0u8; protocol::MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    if msg.bytes == 0 {
        return Ok(None);
    }
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = c {
            // SAFETY: the kernel just installed these descriptors for us.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let mut fds = fds.into_iter();
    let len = msg.bytes;
    Ok(Some(Received {
        body: buf[..len].to_vec(),
        reply: fds.next(),
        oom_report: fds.next(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zygote_out_of_reach_is_unavailable_and_a_workers_kind_is_kept() {
        assert_eq!(
            ZygoteError::Io(nix::Error::EPIPE).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(ZygoteError::NoReply.kind(), ErrorKind::Internal);
        let refused = ZygoteError::Create {
            kind: ErrorKind::InvalidArgument,
            message: "m.wat: export `nope` not found".into(),
        };
        assert_eq!(refused.kind(), ErrorKind::InvalidArgument);
        assert_eq!(refused.to_string(), "m.wat: export `nope` not found");
    }

    #[test]
    fn a_failed_reply_carries_its_kind_across() {
        let reply = protocol::Failure::invalid("bad module")
            .context("/m.wasm")
            .into_reply();
        let bytes = serde_json::to_vec(&reply).unwrap();
        match serde_json::from_slice(&bytes).unwrap() {
            CreateReply::Failed { kind, error } => {
                assert_eq!(kind, ErrorKind::InvalidArgument);
                assert_eq!(error, "/m.wasm: bad module");
            }
            other => panic!("{other:?}"),
        }
    }
}
