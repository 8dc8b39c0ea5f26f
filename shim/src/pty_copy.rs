//! Copying between containerd's FIFOs and a process's pty master, in one poll loop: stdin FIFO
//! → master, master → stdout FIFO. Each direction holds at most one bounded buffer; a full
//! reader simply stops being polled, so nothing is buffered without limit.
//!
//! End-of-file on the stdin FIFO (containerd closed it) hangs the terminal up: its foreground
//! processes get SIGHUP, as with runc. The loop ends when the terminal is hung up (every slave closed: the process and whatever
//! inherited it are gone) and the output is written, or, once told to stop (the process
//! exited), after a short drain deadline: a background process still holding the slave cannot
//! delay the exit event for long.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// How long output may still be copied once the process exited.
pub const DRAIN: Duration = Duration::from_secs(2);

const BUFFER: usize = 32 * 1024;

/// One direction: bytes read from `from` and not yet written to `to`.
struct Pump {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Still reading from the source.
    open: bool,
    /// Bytes read so far.
    total: u64,
}

impl Pump {
    fn new(open: bool) -> Self {
        Self {
            buf: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            open,
            total: 0,
        }
    }

    fn pending(&self) -> bool {
        self.start < self.end
    }

    /// Reads once; EOF or an error (EIO from a hung-up master) closes the source. True at EOF.
    fn fill(&mut self, mut from: &File) -> bool {
        match from.read(&mut self.buf) {
            Ok(0) => {
                self.open = false;
                return true;
            }
            Ok(n) => {
                (self.start, self.end) = (0, n);
                self.total += n as u64;
            }
            Err(e) if retry(&e) => {}
            Err(_) => self.open = false,
        }
        false
    }

    /// Writes once; an error drops what is pending (the destination is gone).
    fn flush(&mut self, mut to: &File) -> bool {
        match to.write(&self.buf[self.start..self.end]) {
            Ok(n) => self.start += n,
            Err(e) if retry(&e) => {}
            Err(_) => {
                self.start = self.end;
                return false;
            }
        }
        true
    }
}

fn retry(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// The descriptors of one terminal's copy.
pub struct Ends {
    /// The pty master (non-blocking).
    pub master: File,
    /// containerd's stdin FIFO, read side (non-blocking), if the process has stdin.
    pub stdin: Option<File>,
    /// containerd's stdout FIFO, write side (non-blocking), if any; without it the output
    /// is read and dropped, so the process never blocks on a full terminal.
    pub stdout: Option<File>,
    /// Readable once the process exited: start the drain.
    pub stop: OwnedFd,
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// containerd closed stdin (the client went): the terminal's session leader and foreground
/// process group get SIGHUP, as when runc's shim closes the console then. (The master stays
/// open, for the output still to come; TIOCSIG cannot send SIGHUP.)
fn hang_up(master: &File) {
    let query = |request| {
        let mut pid: libc::pid_t = 0;
        // SAFETY: TIOCGPGRP and TIOCGSID write one pid_t; on a master they answer for the
        // slave, in our pid namespace.
        let ok = unsafe { libc::ioctl(master.as_raw_fd(), request, &mut pid) } == 0;
        (ok && pid > 0).then_some(pid)
    };
    let (group, leader) = (query(libc::TIOCGPGRP), query(libc::TIOCGSID));
    tracing::info!(?group, ?leader, "stdin closed: hanging up the terminal");
    // SAFETY: kill with pids the kernel just reported for this terminal.
    unsafe {
        if let Some(group) = group {
            libc::kill(-group, libc::SIGHUP);
        }
        if let Some(leader) = leader.filter(|l| Some(*l) != group) {
            libc::kill(leader, libc::SIGHUP);
            libc::kill(leader, libc::SIGCONT);
        }
    }
}

/// Runs the copy until the terminal is hung up and drained, or the drain deadline passes.
pub fn run(ends: Ends) {
    let Ends {
        master,
        stdin,
        stdout,
        stop,
    } = ends;
    let mut input = Pump::new(stdin.is_some());
    let mut output = Pump::new(true);
    let mut deadline: Option<Instant> = None;
    loop {
        if !output.open && !output.pending() {
            tracing::debug!(
                input = input.total,
                output = output.total,
                "terminal hung up and drained"
            );
            return;
        }
        let timeout = match deadline {
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) => left.as_millis().min(i32::MAX as u128) as i32,
                None => {
                    tracing::info!(
                        input = input.total,
                        output = output.total,
                        "terminal drain deadline passed"
                    );
                    return;
                }
            },
            None => -1,
        };
        // Slots: 0 stop, 1 stdin, 2 master in, 3 master out, 4 stdout. -1 is ignored by poll.
        let mut fds = [pollfd(-1, 0); 5];
        if deadline.is_none() {
            fds[0] = pollfd(stop.as_raw_fd(), libc::POLLIN);
        }
        if let Some(stdin) = stdin.as_ref().filter(|_| input.open && !input.pending()) {
            fds[1] = pollfd(stdin.as_raw_fd(), libc::POLLIN);
        }
        if output.open && !output.pending() {
            fds[2] = pollfd(master.as_raw_fd(), libc::POLLIN);
        }
        if input.pending() {
            fds[3] = pollfd(master.as_raw_fd(), libc::POLLOUT);
        }
        if output.pending() {
            match &stdout {
                Some(out) => fds[4] = pollfd(out.as_raw_fd(), libc::POLLOUT),
                None => output.start = output.end,
            }
        }
        // SAFETY: a valid array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!(error = %std::io::Error::last_os_error(), "terminal copy: poll");
            return;
        }
        let ready = |i: usize| fds[i].revents != 0;
        if ready(0) {
            deadline = Some(Instant::now() + DRAIN);
            input.open = false;
        }
        if let (true, Some(stdin)) = (ready(1), &stdin) {
            if input.fill(stdin) {
                hang_up(&master);
            }
        }
        if ready(3) && !input.flush(&master) {
            input.open = false;
        }
        if ready(2) {
            output.fill(&master);
        }
        if let (true, Some(out)) = (ready(4), &stdout) {
            if !output.flush(out) {
                // containerd's end is gone: keep reading the terminal so the process never
                // blocks on it, and drop the output.
                tracing::debug!("terminal copy: stdout is gone");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    fn nonblocking(fd: OwnedFd) -> File {
        let file = File::from(fd);
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        file
    }

    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors we own.
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
    }

    #[test]
    fn input_reaches_the_slave_and_output_is_drained_after_the_hangup() {
        let pty = nix::pty::openpty(None, None).unwrap();
        // Raw slave: no echo, no line discipline in the way.
        let mut t = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
        let (stdin_r, mut stdin_w) = pipe();
        let (stdout_r, stdout_w) = pipe();
        let (stop_r, stop_w) = pipe();
        let ends = Ends {
            master: nonblocking(pty.master),
            stdin: Some(nonblocking(stdin_r.into())),
            stdout: Some(nonblocking(stdout_w.into())),
            stop: stop_r.into(),
        };
        let copier = std::thread::spawn(move || run(ends));
        stdin_w.write_all(b"typed").unwrap();
        let mut slave = File::from(pty.slave);
        let mut got = [0u8; 5];
        slave.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"typed");
        slave.write_all(b"last words").unwrap();
        drop(slave);
        let started = Instant::now();
        copier.join().unwrap();
        assert!(started.elapsed() < DRAIN, "the hangup ends the copy");
        drop(stop_w);
        let mut out = String::new();
        let mut stdout_r = stdout_r;
        stdout_r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "last words");
    }

    #[test]
    fn stop_ends_the_copy_within_the_drain_deadline_while_the_slave_is_held() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let (stop_r, mut stop_w) = pipe();
        let ends = Ends {
            master: nonblocking(pty.master),
            stdin: None,
            stdout: None,
            stop: stop_r.into(),
        };
        let copier = std::thread::spawn(move || run(ends));
        stop_w.write_all(b"x").unwrap();
        let started = Instant::now();
        copier.join().unwrap();
        let took = started.elapsed();
        assert!(took >= DRAIN && took < DRAIN * 2, "{took:?}");
        drop(pty.slave);
    }
}
