//! The guest's stdout and stderr: the process's fds 1 and 2 (containerd's FIFOs), written
//! synchronously with write(2).
//!
//! wasmer's own host stdout (`virtual_fs::host_fs::Stdout`) goes through tokio's blocking
//! pool: a thread per write. Writing the fd directly keeps the order of stdout and stderr
//! lines exactly as the guest wrote them, buffers nothing (nothing is left to flush when the
//! guest exits) and needs no thread. A full pipe blocks the guest, like a native program.

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use wasmer_wasix::virtual_fs::{self, VirtualFile};

#[derive(Debug)]
pub struct HostOutput {
    fd: RawFd,
}

impl HostOutput {
    pub fn stdout() -> Box<Self> {
        Box::new(Self { fd: 1 })
    }

    pub fn stderr() -> Box<Self> {
        Box::new(Self { fd: 2 })
    }

    /// Writes part of `buf`, waiting while the fd is full (it may be non-blocking).
    fn write_some(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: writes from a valid slice to an fd this process owns.
            let n = unsafe { libc::write(self.fd, buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => self.wait_writable()?,
                _ => return Err(err),
            }
        }
    }

    fn wait_writable(&self) -> io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(())
    }
}

impl AsyncWrite for HostOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.write_some(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for HostOutput {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::Error::other("cannot read from an output stream")))
    }
}

/// A stream has no position; seeking is a no-op, as for wasmer's own stdio.
impl AsyncSeek for HostOutput {
    fn start_seek(self: Pin<&mut Self>, _: io::SeekFrom) -> io::Result<()> {
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(0))
    }
}

impl VirtualFile for HostOutput {
    fn last_accessed(&self) -> u64 {
        0
    }

    fn last_modified(&self) -> u64 {
        0
    }

    fn created_time(&self) -> u64 {
        0
    }

    fn size(&self) -> u64 {
        0
    }

    fn set_len(&mut self, _: u64) -> virtual_fs::Result<()> {
        Ok(())
    }

    fn unlink(&mut self) -> virtual_fs::Result<()> {
        Ok(())
    }

    fn get_special_fd(&self) -> Option<u32> {
        Some(self.fd as u32)
    }

    fn poll_read_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(0))
    }

    fn poll_write_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(8192))
    }
}
