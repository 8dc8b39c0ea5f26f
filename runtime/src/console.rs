//! A terminal for a container's process (`terminal: true`), the way runc does it: the process's
//! init, inside the container, opens a pty on the container's devpts, makes its slave the
//! controlling terminal and stdio (fds 0/1/2) and sends the master over a unix socket, the
//! console socket, before it reports ready. [`ConsoleSocket`] is the receiving end; the shim
//! then copies between containerd's FIFOs and the master and sets its window size.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};

/// Where console sockets are bound: short, so every path fits a `sockaddr_un`
/// (libcontainer reaches it through a symlink in the container's state directory).
const SOCKET_DIR: &str = "/run/wasmpod/tty";

/// How long the master may take to arrive once the process is created. libcontainer's init
/// sends it before reporting ready, so it is normally already queued.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a terminal could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Creating or binding the console socket.
    #[error("console socket {path}: {source}")]
    Bind {
        /// The socket's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The pty master did not arrive, or what arrived is not one.
    #[error("receiving the container's terminal: {0}")]
    Receive(String),
    /// The request and the process spec disagree about the terminal.
    #[error("{0}")]
    Mismatch(String),
}

/// A listening console socket; its file goes when it is dropped.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Binds a fresh console socket (root-only directory).
    pub fn bind() -> Result<Self, ConsoleError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = Path::new(SOCKET_DIR);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}.sock", std::process::id()));
        let err = |source| ConsoleError::Bind {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        // A socket of an earlier shim with our pid, killed before it removed it.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        Ok(Self { listener, path })
    }

    /// The path to hand to libcontainer.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master the process's init sent (waits up to a few seconds for it).
    pub fn receive(self) -> Result<OwnedFd, ConsoleError> {
        let fail = |what: String| ConsoleError::Receive(what);
        if !wait_readable(self.listener.as_raw_fd(), RECEIVE_TIMEOUT) {
            return Err(fail(format!(
                "no connection on {} within {RECEIVE_TIMEOUT:?}",
                self.path.display()
            )));
        }
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| fail(format!("accept: {e}")))?;
        stream
            .set_read_timeout(Some(RECEIVE_TIMEOUT))
            .map_err(|e| fail(e.to_string()))?;
        let master = receive_fd(stream.as_raw_fd())?;
        check_master(&master)?;
        Ok(master)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return n > 0;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

fn receive_fd(socket: RawFd) -> Result<OwnedFd, ConsoleError> {
    let mut name = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let msg = recvmsg::<UnixAddr>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| ConsoleError::Receive(format!("recvmsg: {e}")))?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for cmsg in msg
        .cmsgs()
        .map_err(|e| ConsoleError::Receive(e.to_string()))?
    {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: SCM_RIGHTS gave us these descriptors; nobody else owns them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if fds.len() != 1 {
        return Err(ConsoleError::Receive(format!(
            "expected one descriptor, got {}",
            fds.len()
        )));
    }
    Ok(fds.remove(0))
}

/// A pty master answers TIOCGPTN (its slave's number); anything else is refused.
fn check_master(fd: &OwnedFd) -> Result<(), ConsoleError> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut n) } != 0 {
        return Err(ConsoleError::Receive(format!(
            "not a pty master: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Sets the window size of the terminal whose master is `master` (its foreground process
/// group gets SIGWINCH).
pub fn resize(master: BorrowedFd<'_>, width: u16, height: u16) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The `terminal` of the process spec, checked against what the request asked for: containerd
/// sets both, and they must agree (the spec decides what libcontainer does).
pub fn terminal_of(
    process: Option<&oci_spec::runtime::Process>,
    requested: bool,
) -> Result<bool, ConsoleError> {
    let in_spec = process.and_then(|p| p.terminal()).unwrap_or(false);
    if in_spec != requested {
        return Err(ConsoleError::Mismatch(format!(
            "the request asks for terminal={requested} but the process spec says terminal={in_spec}"
        )));
    }
    Ok(in_spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `fd` to the console socket at `path` as libcontainer's init does; the returned
    /// connection stays open until dropped.
    fn send_fd(path: &Path, fd: RawFd) -> std::os::unix::net::UnixStream {
        let client = std::os::unix::net::UnixStream::connect(path).unwrap();
        let iov = [std::io::IoSlice::new(b"/dev/ptmx")];
        nix::sys::socket::sendmsg::<UnixAddr>(
            client.as_raw_fd(),
            &iov,
            &[nix::sys::socket::ControlMessage::ScmRights(&[fd])],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        client
    }

    #[test]
    fn a_sent_pty_master_is_received_and_resized() {
        let socket = ConsoleSocket::bind().unwrap();
        let path = socket.path().to_path_buf();
        let pty = nix::pty::openpty(None, None).unwrap();
        let _client = send_fd(&path, pty.master.as_raw_fd());
        let master = socket.receive().unwrap();
        assert!(!path.exists(), "the socket file is removed");
        resize(std::os::fd::AsFd::as_fd(&master), 100, 42).unwrap();
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut size) },
            0
        );
        assert_eq!((size.ws_col, size.ws_row), (100, 42));
    }

    #[test]
    fn request_and_spec_must_agree_about_the_terminal() {
        let mut process = oci_spec::runtime::Process::default();
        process.set_terminal(Some(true));
        assert!(terminal_of(Some(&process), true).unwrap());
        let err = terminal_of(Some(&process), false).unwrap_err().to_string();
        assert!(
            err.contains("terminal=false") && err.contains("terminal=true"),
            "{err}"
        );
        process.set_terminal(None);
        assert!(!terminal_of(Some(&process), false).unwrap());
        assert!(terminal_of(None, true).is_err());
    }

    #[test]
    fn something_else_than_a_pty_master_is_refused() {
        let socket = ConsoleSocket::bind().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let _client = send_fd(socket.path(), file.as_raw_fd());
        let err = socket.receive().unwrap_err().to_string();
        assert!(err.contains("not a pty master"), "{err}");
    }
}
