//! Driving a command through a terminal, as a user at a keyboard would: the command (`ctr run
//! -t`, `ctr task exec -t`) gets a fresh pty's slave as its controlling terminal and stdio; the
//! test types into the master, reads the screen from it and resizes it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A command running on a pty whose master the test holds.
pub struct PtySession {
    master: File,
    child: Child,
    /// Everything read from the terminal so far.
    transcript: String,
    what: String,
}

fn last_error(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error())
}

/// A new pty: (master, slave).
fn open_pty() -> Result<(File, File)> {
    // SAFETY: plain libc calls on descriptors we own; ptsname_r writes into our buffer.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if master < 0 {
            return Err(last_error("posix_openpt"));
        }
        let master = File::from(OwnedFd::from_raw_fd(master));
        if libc::grantpt(master.as_raw_fd()) != 0 || libc::unlockpt(master.as_raw_fd()) != 0 {
            return Err(last_error("grantpt/unlockpt"));
        }
        let mut name = [0 as libc::c_char; 128];
        if libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) != 0 {
            return Err(last_error("ptsname_r"));
        }
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_str()
            .context("pty name")?
            .to_string();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("opening {path}"))?;
        Ok((master, slave))
    }
}

fn set_size(fd: &File, rows: u16, cols: u16) -> Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(last_error("TIOCSWINSZ"));
    }
    Ok(())
}

impl PtySession {
    /// Starts `cmd` in a new session whose controlling terminal is a fresh `rows`x`cols` pty.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Result<Self> {
        let what = crate::process::describe(&cmd);
        let (master, slave) = open_pty()?;
        set_size(&master, rows, cols)?;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: async-signal-safe calls only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        // The slave copies went with `cmd`'s Stdio into the child only.
        drop(cmd);
        Ok(Self {
            master,
            child,
            transcript: String::new(),
            what,
        })
    }

    /// Types `text`.
    pub fn write(&mut self, text: &str) -> Result<()> {
        self.master
            .write_all(text.as_bytes())
            .with_context(|| format!("typing into {}", self.what))
    }

    /// Resizes the terminal (the command gets SIGWINCH).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        set_size(&self.master, rows, cols)
    }

    /// Reads the terminal until `needle` appears in what was read since the last match (or the
    /// start), up to `timeout`; fails with the transcript.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.transcript.find(needle) {
                self.transcript.drain(..at + needle.len());
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.read_some(left)? {
                bail!(
                    "{:?} not seen on the terminal of {} within {timeout:?}; it shows:\n{}",
                    needle,
                    self.what,
                    self.transcript
                );
            }
        }
    }

    /// Reads what is available within `timeout`; false at the end (hangup) or on a timeout.
    fn read_some(&mut self, timeout: Duration) -> Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n <= 0 {
            return Ok(false);
        }
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.transcript
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
                Ok(true)
            }
            // EIO: every slave is closed.
            Err(_) => Ok(false),
        }
    }

    /// Waits for the command's exit code, reading (and keeping) its last output meanwhile.
    pub fn wait(mut self, timeout: Duration) -> Result<(Option<i32>, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                while self.read_some(Duration::from_millis(100))? {}
                return Ok((status.code(), self.transcript.clone()));
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still running after {timeout:?}; its terminal shows:\n{}",
                    self.what,
                    self.transcript
                );
            }
            self.read_some(Duration::from_millis(50))?;
        }
    }
}

impl Drop for PtySession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
