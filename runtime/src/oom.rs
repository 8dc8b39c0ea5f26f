//! How a container's out-of-memory end is told to the shim, for containerd's `TaskOOM` event
//! (CRI turns it into the reason `OOMKilled`).
//!
//! Two sources: the kernel's OOM killer (the memory cgroup's `oom_kill` counter, v1
//! `memory.oom_control` or v2 `memory.events`), and a wasm guest the engine stopped at the
//! memory limit. The latter never reaches the kernel's limit, so the executor says so in an
//! [`OomReport`]: a memfd the shim creates, the container's init inherits, and the shim reads
//! when the init has exited. A memfd needs no path, so nothing is left behind.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::uio::pread;

/// What the executor writes when the engine stopped the guest at its memory limit.
const MEMORY_LIMIT_MARK: &[u8] = b"memory-limit\n";

/// The shim's end of a container's report channel.
#[derive(Debug)]
pub struct OomReport {
    memfd: OwnedFd,
}

impl OomReport {
    pub fn new() -> std::io::Result<Self> {
        let memfd = memfd_create(c"wasmpod-oom-report", MemFdCreateFlag::MFD_CLOEXEC)?;
        Ok(OomReport { memfd })
    }

    /// The descriptor to hand to the container's init.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    /// True when the container's executor reported a memory-limit stop.
    pub fn memory_limit_hit(&self) -> bool {
        let mut buf = [0u8; MEMORY_LIMIT_MARK.len()];
        matches!(pread(&self.memfd, &mut buf, 0), Ok(n) if buf[..n] == *MEMORY_LIMIT_MARK)
    }
}

/// Called in the container's init: record that the engine stopped the guest at its limit.
pub fn report_memory_limit(report: impl AsFd) {
    let _ = nix::unistd::write(report, MEMORY_LIMIT_MARK);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_report_is_read_back_and_an_empty_one_is_not() {
        let report = OomReport::new().unwrap();
        assert!(!report.memory_limit_hit());
        report_memory_limit(report.fd());
        assert!(report.memory_limit_hit());
    }
}
