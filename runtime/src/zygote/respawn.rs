//! A fresh zygote for a running shim. The first zygote is forked at start-up, while the shim
//! has one thread; once threads run, forking the shim is unsafe, so a replacement is the shim's
//! own binary executed again in zygote mode ([`ZYGOTE_ARG`]): `std::process::Command` runs only
//! async-signal-safe code between its fork and the exec, and the new process starts with one
//! thread and a clean environment. Its socket is inherited across the exec; the shim binary
//! dispatches the argument to [`serve_inherited`] before anything else.

use std::convert::Infallible;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::SigSet;
use nix::sys::socket::{getsockopt, sockopt, SockType};
use nix::unistd::Pid;

use super::{seqpacket_pair, worker, ZygoteError};
use crate::engine::WasmEngine;

/// The first argument that makes a shim binary a zygote; the second is its socket's fd.
pub const ZYGOTE_ARG: &str = "--wasmpod-zygote";

/// Variables a zygote reads itself (the guest seccomp profile's mode); nothing else of the
/// shim's environment reaches it.
const PASSED_ENV: &[&str] = &[crate::seccomp::LOG_MODE_ENV];

/// Whether a failed send means the zygote is gone (its end of the socket is closed).
pub(super) fn is_gone(e: nix::Error) -> bool {
    matches!(
        e,
        nix::Error::EPIPE
            | nix::Error::ECONNRESET
            | nix::Error::ECONNREFUSED
            | nix::Error::ENOTCONN
    )
}

/// Starts `/proc/self/exe ZYGOTE_ARG FD` with the zygote's end of a new socket pair as `FD`;
/// returns our end and its pid. The shim's child subreaper reaps it when it ends.
pub(super) fn exec_zygote() -> std::io::Result<(OwnedFd, Pid)> {
    let (ours, theirs) = seqpacket_pair().map_err(std::io::Error::from)?;
    let fd = theirs.as_raw_fd();
    let mut command = Command::new("/proc/self/exe");
    // Named like the shim in `ps`, not `/proc/self/exe`.
    if let Some(name) = std::env::args_os().next() {
        command.arg0(name);
    }
    command
        .arg(ZYGOTE_ARG)
        .arg(fd.to_string())
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for name in PASSED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    // SAFETY: fcntl is async-signal-safe; it only lets this one descriptor survive the exec.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    // Only the zygote holds its end now: its death reads as EPIPE here.
    drop(theirs);
    let pid = Pid::from_raw(child.id() as i32);
    // Not waited for here: the shim's reaper collects every child.
    drop(child);
    Ok((ours, pid))
}

/// The zygote mode of a shim binary: serves the socket inherited as fd `fd_arg` until the shim
/// closes it. Returns only when the process is not a freshly executed zygote.
pub fn serve_inherited<E: WasmEngine>(fd_arg: &str) -> Result<Infallible, ZygoteError> {
    let bad = |why: String| ZygoteError::Protocol(format!("zygote socket {fd_arg:?}: {why}"));
    let fd: RawFd = fd_arg
        .parse()
        .map_err(|e| bad(format!("not a descriptor: {e}")))?;
    if fd < 3 {
        return Err(bad("stdio is no zygote socket".into()));
    }
    // SAFETY: checked below to be an open SEQPACKET socket; this process owns it from here.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    match getsockopt(&socket, sockopt::SockType) {
        Ok(SockType::SeqPacket) => {}
        Ok(other) => return Err(bad(format!("a {other:?} socket, not SEQPACKET"))),
        Err(e) => return Err(bad(e.to_string())),
    }
    fcntl(socket.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| bad(e.to_string()))?;
    let threads = worker::threads_of_self();
    if threads != 1 {
        return Err(ZygoteError::Threaded(threads));
    }
    // The exec kept the mask of the shim thread that started us (SIGCHLD, SIGTERM and SIGINT
    // blocked, for the shim's signal thread); containers must not inherit it.
    SigSet::empty()
        .thread_set_mask()
        .map_err(|e| bad(format!("clearing the signal mask: {e}")))?;
    worker::serve::<E>(socket, worker::Parent::Executed)
}
