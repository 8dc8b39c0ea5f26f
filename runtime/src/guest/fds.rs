//! Descriptors: guest code starts with its stdio only.
//!
//! The init is a fork (without exec) of a zygote worker, so it inherits whatever that held:
//! the zygote's kept cache artifacts, the worker's reply socket, the OOM-report memfd, anything
//! passed through `LISTEN_FDS`. None of it is the guest's; the engine opens its preopens itself.

use std::io;

/// Closes every descriptor from 3 up. Falls back to a loop where `close_range(2)` is missing
/// (Linux < 5.9).
pub fn close_all_but_stdio() -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; nothing in this single-threaded process
    // uses one above 2 after this point (the OOM report was mapped beforehand).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::ENOSYS) {
        return Err(error);
    }
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft.min(1 << 20));
    for fd in 3..limit as i32 {
        // SAFETY: as above; EBADF for descriptors that are not open is expected.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Runs in a forked child so the test process keeps its own descriptors.
    #[test]
    fn only_stdio_is_left_open() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let raw = file.as_raw_fd();
        assert!(raw > 2);
        // SAFETY: the child only makes raw syscalls and exits with _exit.
        match unsafe { libc::fork() } {
            0 => {
                let closed = close_all_but_stdio().is_ok()
                    // SAFETY: fcntl on a possibly closed descriptor.
                    && unsafe { libc::fcntl(raw, libc::F_GETFD) } == -1
                    && unsafe { libc::fcntl(2, libc::F_GETFD) } != -1;
                unsafe { libc::_exit(if closed { 0 } else { 1 }) }
            }
            pid => {
                assert!(pid > 0);
                let mut status = 0;
                // SAFETY: waiting for our own child.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
                // The parent's descriptor is untouched.
                assert!(unsafe { libc::fcntl(raw, libc::F_GETFD) } != -1);
            }
        }
    }
}
