//! The container's init process, cleaned of everything it inherited from the host before guest
//! code runs (issue 10, "the guest process holds nothing of the host").
//!
//! The init that runs a wasm guest is a fork, without exec, of a zygote worker, itself a fork of
//! the shim: it starts with the shim's descriptors, argument and environment blocks, and the
//! whole container filesystem including `/proc` and `/sys`. [`prepare_guest`] runs in the init
//! (and in a wasm exec's process) just before the engine, in this order:
//! 1. [`fds`]: only stdio stays open (the OOM report is mapped first, see [`crate::oom`]);
//! 2. [`environ`]: `/proc/<pid>/cmdline` and `environ` show the guest's args and env;
//! 3. [`landlock`]: the guest cannot open procfs, sysfs, or device nodes but the usual ones
//!    (nor, with `wasmpod.io/preopens`, anything outside its preopens but `/etc`).
//!
//! wasmpod's seccomp filter is installed after these, so they need none of its syscalls.
//! Limits are documented in [`landlock`] and in the README's security section.

mod environ;
mod fds;
mod landlock;

use std::os::fd::BorrowedFd;

pub use environ::MmLayout;
pub use landlock::LandlockError;

use crate::engine::GuestContext;
use crate::oom::MemoryLimitMark;

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("closing inherited descriptors: {0}")]
    Descriptors(std::io::Error),
    #[error(transparent)]
    Landlock(#[from] LandlockError),
}

/// Cleans this process for `guest`; returns where to report a memory-limit stop, if the shim
/// asked for reports. `layout` is the memory layout captured in the zygote worker (see
/// [`MmLayout`]). Warnings go to stderr: the init has no log subscriber, and its stderr is
/// the container's.
pub fn prepare_guest(
    guest: &GuestContext,
    layout: Option<&MmLayout>,
    oom_report: Option<BorrowedFd<'_>>,
) -> Result<Option<MemoryLimitMark>, GuestError> {
    let mark = oom_report.and_then(|fd| match MemoryLimitMark::map(fd) {
        Ok(mark) => Some(mark),
        Err(e) => {
            eprintln!("wasmpod: warning: cannot map the OOM report, a memory-limit stop will not be reported as OOM: {e}");
            None
        }
    });
    fds::close_all_but_stdio().map_err(GuestError::Descriptors)?;

    let layout = layout.copied().or_else(|| MmLayout::of_self().ok());
    match layout {
        Some(layout) => {
            if let Err(e) = environ::replace(&layout, &guest.args, &guest.env) {
                eprintln!("wasmpod: warning: cannot set the process's cmdline and environ (the inherited ones were wiped): {e}");
            }
        }
        None => {
            // SAFETY: single-threaded init; nothing holds pointers into the environment.
            unsafe { libc::clearenv() };
            eprintln!("wasmpod: warning: memory layout unknown: the process's cmdline and environ were left as inherited");
        }
    }

    if landlock::restrict(guest.grants.preopens.as_deref())? == landlock::Outcome::Unsupported {
        eprintln!("wasmpod: warning: this kernel has no Landlock: the guest's file access is limited by the container only (it can open /proc and /sys)");
    }
    Ok(mark)
}
