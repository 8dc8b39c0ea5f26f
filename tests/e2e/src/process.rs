//! Running a command with captured output, optional stdin and a hard timeout.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long to wait for the output pipes to close after the process itself has exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// The outcome of a finished (or killed) command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit code; `None` when the process was killed by a signal (including on timeout).
    pub status: Option<i32>,
    /// The signal that ended the process, if any.
    pub signal: Option<i32>,
    /// True when the process was killed because it ran past its timeout.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CmdOutput {
    /// True when the command exited with code 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// Returns `self` when the exit code is 0, otherwise an error describing the run.
    pub fn ok(self) -> Result<Self> {
        self.expect_code(0)
    }

    /// Returns `self` when the exit code is `code`, otherwise an error describing the run.
    pub fn expect_code(self, code: i32) -> Result<Self> {
        if self.status != Some(code) {
            bail!("expected exit code {code}: {self}");
        }
        Ok(self)
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ", self.command)?;
        match (self.timed_out, self.status, self.signal) {
            (true, ..) => write!(f, "timed out")?,
            (false, Some(code), _) => write!(f, "exited with code {code}")?,
            (false, None, Some(sig)) => write!(f, "was killed by signal {sig}")?,
            (false, None, None) => write!(f, "ended without a status")?,
        }
        write!(f, " after {:.2?}", self.elapsed)?;
        write!(
            f,
            "\n  stdout: {:?}\n  stderr: {:?}",
            self.stdout, self.stderr
        )
    }
}

/// A running command whose stdout and stderr are being collected in the background.
#[derive(Debug)]
pub struct Running {
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    started: Instant,
}

impl Running {
    /// Starts `cmd` with piped stdout/stderr; stdin is piped when `with_stdin`, else null.
    pub fn spawn(mut cmd: Command, with_stdin: bool) -> Result<Self> {
        let command = describe(&cmd);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{command}`"))?;
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());
        let stdin = child.stdin.take();
        Ok(Running {
            command,
            child,
            stdin,
            stdout,
            stderr,
            started,
        })
    }

    /// The process id of the command.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True once the command has exited (it is reaped by [`Running::wait`]).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Writes bytes to the command's stdin (fails when stdin was not piped or is closed).
    pub fn write_stdin(&mut self, bytes: &[u8]) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .context("stdin is not piped or already closed")?;
        stdin.write_all(bytes).context("writing to stdin")?;
        stdin.flush().context("flushing stdin")
    }

    /// Closes stdin so the command sees end-of-file.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends SIGKILL to the command (it is reaped by [`Running::wait`] or on drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits up to `timeout` for the command to exit; kills it when the timeout passes.
    pub fn wait(mut self, timeout: Duration) -> Result<CmdOutput> {
        self.close_stdin();
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = self.child.try_wait().context("waiting for child")? {
                break status;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                let _ = self.child.kill();
                break self.child.wait().context("reaping killed child")?;
            }
            thread::sleep(Duration::from_millis(10));
        };
        let elapsed = self.started.elapsed();
        Ok(CmdOutput {
            command: self.command.clone(),
            status: status.code(),
            signal: status.signal(),
            timed_out,
            stdout: receive(&self.stdout),
            stderr: receive(&self.stderr),
            elapsed,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion, feeding `stdin` if given, killing it after `timeout`.
pub fn run(cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<CmdOutput> {
    let mut running = Running::spawn(cmd, stdin.is_some())?;
    if let Some(bytes) = stdin {
        // A command may exit without reading its input; a broken pipe is not our failure.
        let _ = running.write_stdin(bytes);
    }
    running.wait(timeout)
}

/// `program arg1 arg2 ...` for messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
    }
    rx
}

/// A grandchild that inherited the pipe could keep it open forever; do not hang on it.
fn receive(rx: &Receiver<String>) -> String {
    rx.recv_timeout(PIPE_GRACE)
        .unwrap_or_else(|_| "<output unavailable: pipe still held open>".to_string())
}
