//! How a container's out-of-memory end is told to the shim, for containerd's `TaskOOM` event
//! (CRI turns it into the reason `OOMKilled`).
//!
//! Two sources: the kernel's OOM killer (the memory cgroup's `oom_kill` counter, v1
//! `memory.oom_control` or v2 `memory.events`), and a wasm guest the engine stopped at the
//! memory limit. The latter never reaches the kernel's limit, so the executor says so in an
//! [`OomReport`]: a memfd the shim creates, the container's init inherits, and the shim reads
//! when the init has exited. A memfd needs no path, so nothing is left behind.
//!
//! Guest code must start with no descriptor but its stdio (the executor closes the others), so
//! the init maps the memfd shared ([`MemoryLimitMark`]), closes it, and writes the mark through the
//! mapping; the shim's `pread` sees the same page.
//!
//! Kills while the container keeps running (a child of its init) are watched live by
//! [`watch::OomWatcher`].

pub mod watch;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::uio::pread;

/// What the executor writes when the engine stopped the guest at its memory limit.
const MEMORY_LIMIT_MARK: &[u8] = b"memory-limit\n";
/// Where in the page the shim stores a guest's updated memory cap (a `u64`, 0 = none yet).
const LIVE_LIMIT_OFFSET: usize = 64;

/// The shim's end of a container's report channel, which also carries the guest's memory cap
/// when the container's memory limit is updated.
#[derive(Debug)]
pub struct OomReport {
    memfd: OwnedFd,
    page: SharedPage,
}

impl OomReport {
    /// A new report channel (a memfd), to be passed to the container's init.
    pub fn new() -> std::io::Result<Self> {
        let memfd = memfd_create(c"wasmpod-oom-report", MemFdCreateFlag::MFD_CLOEXEC)?;
        let page = SharedPage::map(memfd.as_fd())?;
        Ok(OomReport { memfd, page })
    }

    /// Gives the running guest a new memory cap of `bytes` (see
    /// [`crate::memory_limit::MemoryLimit`]); the engine sees it at the guest's next growth.
    pub fn set_guest_memory_limit(&self, bytes: u64) {
        self.page
            .live_limit()
            .store(bytes.max(1), Ordering::Release);
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

/// The init's end of the report, mapped so it needs no open descriptor.
#[derive(Debug)]
pub struct MemoryLimitMark {
    page: SharedPage,
}

impl MemoryLimitMark {
    /// Grows the memfd to one page and maps it shared; the descriptor may be closed after.
    pub fn map(report: BorrowedFd<'_>) -> std::io::Result<Self> {
        SharedPage::map(report).map(|page| MemoryLimitMark { page })
    }

    /// The guest's memory cap as the shim updates it (0 until it does). The page stays mapped
    /// for the life of the init (it is never unmapped: the process ends with `exit`).
    pub fn live_limit(&self) -> &'static AtomicU64 {
        // SAFETY: see `SharedPage::live_limit`; the init never unmaps the page (the mark is
        // leaked with the process), so the reference lives as long as the process.
        unsafe { &*(self.page.live_limit() as *const AtomicU64) }
    }

    /// Records that the engine stopped the guest at its memory limit; makes no syscall.
    pub fn report_memory_limit(&self) {
        // SAFETY: the page is mapped read-write for the life of the process (never unmapped)
        // and is longer than the mark.
        unsafe {
            std::ptr::copy_nonoverlapping(
                MEMORY_LIMIT_MARK.as_ptr(),
                self.page.ptr.as_ptr(),
                MEMORY_LIMIT_MARK.len(),
            );
        }
    }
}

/// One page of the report's memfd, mapped shared by the shim and by the init.
#[derive(Debug)]
struct SharedPage {
    ptr: std::ptr::NonNull<u8>,
}

// SAFETY: the page is only written through atomics (the cap) or by the init alone (the mark).
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    fn map(report: BorrowedFd<'_>) -> std::io::Result<Self> {
        nix::unistd::ftruncate(report, PAGE as i64)?;
        // SAFETY: a new shared mapping of one page of a memfd that is one page long.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                report.as_raw_fd(),
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        std::ptr::NonNull::new(page.cast())
            .map(|ptr| Self { ptr })
            .ok_or_else(|| std::io::Error::other("mmap returned a null page"))
    }

    fn live_limit(&self) -> &AtomicU64 {
        // SAFETY: the page is mapped read-write while `self` lives, page-aligned, and longer
        // than the offset plus 8 bytes, so the cell is aligned and in bounds; it is only
        // accessed atomically.
        unsafe { &*self.ptr.as_ptr().add(LIVE_LIMIT_OFFSET).cast::<AtomicU64>() }
    }
}

impl Drop for OomReport {
    fn drop(&mut self) {
        // SAFETY: the shim's own mapping of one page, no longer referenced.
        unsafe {
            libc::munmap(self.page.ptr.as_ptr().cast(), PAGE);
        }
    }
}

/// The mapped size; any length above the mark would do.
const PAGE: usize = 4096;

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

    #[test]
    fn a_mark_written_through_the_mapping_after_close_is_read_back() {
        let report = OomReport::new().unwrap();
        // The init's copy of the descriptor, closed once mapped.
        let init_copy = report.fd().try_clone_to_owned().unwrap();
        let mark = MemoryLimitMark::map(init_copy.as_fd()).unwrap();
        drop(init_copy);
        assert!(
            !report.memory_limit_hit(),
            "a fresh page must not read as a mark"
        );
        mark.report_memory_limit();
        assert!(report.memory_limit_hit());
    }

    #[test]
    fn an_updated_cap_reaches_the_init_and_is_not_a_mark() {
        let report = OomReport::new().unwrap();
        let mark = MemoryLimitMark::map(report.fd()).unwrap();
        assert_eq!(mark.live_limit().load(Ordering::Acquire), 0);
        report.set_guest_memory_limit(48 << 20);
        assert_eq!(mark.live_limit().load(Ordering::Acquire), 48 << 20);
        assert!(!report.memory_limit_hit());
    }
}
