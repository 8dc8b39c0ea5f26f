//! Running `ctr` against the private containerd.
//!
//! Every method returns `Err` only when `ctr` could not be started; a non-zero exit status is
//! reported in the [`CmdOutput`], so a test asserts it with `.ok()?` or `.expect_code(n)?`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::process::{self, CmdOutput, Running};

/// The default time a single `ctr` invocation may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `ctr -a SOCKET -n NAMESPACE ...` with a timeout.
#[derive(Debug, Clone)]
pub struct Ctr {
    binary: PathBuf,
    address: PathBuf,
    namespace: String,
    timeout: Duration,
    fifo_dir: Option<PathBuf>,
}

impl Ctr {
    /// A `ctr` talking to `address` in namespace `default` with [`DEFAULT_TIMEOUT`].
    pub fn new(binary: &Path, address: &Path) -> Self {
        Ctr {
            binary: binary.to_path_buf(),
            address: address.to_path_buf(),
            namespace: "default".to_string(),
            timeout: DEFAULT_TIMEOUT,
            fifo_dir: None,
        }
    }

    /// The same, passing `--fifo-dir DIR` to the `ctr run` helpers (keeps stdio FIFOs, also
    /// those of a killed `ctr`, out of `/run/containerd/fifo`).
    pub fn with_fifo_dir(mut self, dir: &Path) -> Self {
        self.fifo_dir = Some(dir.to_path_buf());
        self
    }

    /// The same, in another namespace.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_string();
        self
    }

    /// The same, with another default timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The containerd socket this talks to.
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// A ready `Command` for `ctr -a SOCKET -n NAMESPACE ARGS...` (not started).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-a").arg(&self.address);
        cmd.arg("-n").arg(&self.namespace);
        cmd.args(args);
        cmd
    }

    /// Runs `ctr ARGS...` with the default timeout.
    pub fn run(&self, args: &[&str]) -> Result<CmdOutput> {
        self.run_timeout(args, self.timeout)
    }

    /// Runs `ctr ARGS...`, killing it after `timeout`.
    pub fn run_timeout(&self, args: &[&str], timeout: Duration) -> Result<CmdOutput> {
        process::run(self.command(args), None, timeout)
    }

    /// Runs `ctr ARGS...` with `stdin` written to its (piped) standard input, then closed at
    /// once. For `ctr run`/`ctr task exec` prefer [`Ctr::run_task_stdin`] (EOF race).
    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Result<CmdOutput> {
        process::run(self.command(args), Some(stdin), self.timeout)
    }

    /// Starts `ctr ARGS...` in the background; finish it with [`Running::wait`].
    /// Stdin is piped when `with_stdin`, else `/dev/null`. Dropping the handle kills `ctr`.
    pub fn spawn(&self, args: &[&str], with_stdin: bool) -> Result<Running> {
        Running::spawn(self.command(args), with_stdin)
    }

    /// `ctr run --rm --runtime RUNTIME IMAGE ID ARGS...`
    pub fn run_rm(&self, runtime: &str, image: &str, id: &str, args: &[&str]) -> Result<CmdOutput> {
        self.run(&self.run_args(&["--rm"], runtime, image, id, args))
    }

    /// `ctr run --rm --runtime RUNTIME FLAGS... IMAGE ID ARGS...` (e.g. `--env K=V`).
    pub fn run_rm_flags(
        &self,
        runtime: &str,
        flags: &[&str],
        image: &str,
        id: &str,
        args: &[&str],
    ) -> Result<CmdOutput> {
        let mut all = vec!["--rm"];
        all.extend_from_slice(flags);
        self.run(&self.run_args(&all, runtime, image, id, args))
    }

    /// `ctr run --rm --runtime RUNTIME IMAGE ID ARGS...` with `stdin` piped in; see
    /// [`Ctr::run_task_stdin`] for when stdin is closed.
    pub fn run_rm_stdin(
        &self,
        runtime: &str,
        image: &str,
        id: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> Result<CmdOutput> {
        self.run_task_stdin(
            &self.run_args(&["--rm"], runtime, image, id, args),
            id,
            stdin,
        )
    }

    /// Runs `ctr ARGS...` (a `run` or `task exec` of task `id`) feeding it `stdin`, and closes
    /// stdin only once the task is RUNNING or STOPPED (or ctr has exited).
    ///
    /// `ctr` forwards end-of-file to the task (CloseIO) only if it sees it after creating the
    /// task; an EOF that arrives earlier is lost and the task waits for input forever.
    pub fn run_task_stdin(&self, args: &[&str], id: &str, stdin: &[u8]) -> Result<CmdOutput> {
        let deadline = Instant::now() + self.timeout;
        let mut running = self.spawn(args, true)?;
        // The task may exit without reading; a broken pipe is not a failure here.
        let _ = running.write_stdin(stdin);
        while Instant::now() < deadline && !running.has_exited() {
            let status = self.task_status(id).ok().flatten();
            if matches!(status.as_deref(), Some("RUNNING" | "STOPPED")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        running.close_stdin();
        running.wait(deadline.saturating_duration_since(Instant::now()))
    }

    /// `ctr run -d --runtime RUNTIME IMAGE ID ARGS...`: returns once the task has started.
    pub fn run_detached(
        &self,
        runtime: &str,
        image: &str,
        id: &str,
        args: &[&str],
    ) -> Result<CmdOutput> {
        self.run(&self.run_args(&["-d"], runtime, image, id, args))
    }

    /// `ctr images import TAR`
    pub fn import(&self, tar: &Path) -> Result<CmdOutput> {
        let mut cmd = self.command(&["images", "import"]);
        cmd.arg(tar);
        process::run(cmd, None, self.timeout)
    }

    /// `ctr task kill -s SIGNAL ID` (signal as a name like `SIGTERM` or a number).
    pub fn task_kill(&self, id: &str, signal: &str) -> Result<CmdOutput> {
        self.run(&["task", "kill", "-s", signal, id])
    }

    /// `ctr task ps ID`
    pub fn task_ps(&self, id: &str) -> Result<CmdOutput> {
        self.run(&["task", "ps", id])
    }

    /// The host pids listed by `ctr task ps ID` (fails when ctr fails).
    pub fn task_pids(&self, id: &str) -> Result<Vec<u32>> {
        let out = self.task_ps(id)?.ok()?;
        Ok(out
            .stdout
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().next()?.parse().ok())
            .collect())
    }

    /// `ctr task metrics --format json ID`
    pub fn task_metrics(&self, id: &str) -> Result<CmdOutput> {
        self.run(&["task", "metrics", "--format", "json", id])
    }

    /// The parsed JSON of `ctr task metrics` (fails when ctr fails or prints no JSON).
    pub fn task_metrics_json(&self, id: &str) -> Result<serde_json::Value> {
        let out = self.task_metrics(id)?.ok()?;
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("metrics of {id} are not JSON: {:?}", out.stdout))
    }

    /// `ctr task delete ID`
    pub fn task_delete(&self, id: &str) -> Result<CmdOutput> {
        self.run(&["task", "delete", id])
    }

    /// The rows of `ctr task ls` (TASK, PID, STATUS), in its order.
    pub fn task_rows(&self) -> Result<Vec<TaskRow>> {
        let out = self.run(&["task", "ls"])?.ok()?;
        Ok(out
            .stdout
            .lines()
            .skip(1)
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                Some(TaskRow {
                    id: cols.first()?.to_string(),
                    pid: cols.get(1).and_then(|p| p.parse().ok()),
                    status: cols.last().unwrap_or(&"").to_string(),
                })
            })
            .collect())
    }

    /// The STATUS column of `ctr task ls` for task `id` (e.g. `RUNNING`, `STOPPED`), or
    /// `None` when there is no such task.
    pub fn task_status(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .task_rows()?
            .into_iter()
            .find(|row| row.id == id)
            .map(|row| row.status))
    }

    /// The ids printed by `ctr task ls -q` (fails when ctr fails).
    pub fn task_list(&self) -> Result<Vec<String>> {
        let out = self.run(&["task", "ls", "-q"])?.ok()?;
        Ok(out.stdout.split_whitespace().map(str::to_string).collect())
    }

    /// `ctr container delete ID`
    pub fn container_delete(&self, id: &str) -> Result<CmdOutput> {
        self.run(&["container", "delete", id])
    }

    /// `run FLAGS... [--fifo-dir DIR] --runtime RUNTIME IMAGE ID ARGS...`
    fn run_args<'a>(
        &'a self,
        flags: &[&'a str],
        runtime: &'a str,
        image: &'a str,
        id: &'a str,
        args: &[&'a str],
    ) -> Vec<&'a str> {
        let mut all = vec!["run"];
        all.extend_from_slice(flags);
        if let Some(dir) = self.fifo_dir.as_deref().and_then(Path::to_str) {
            all.extend_from_slice(&["--fifo-dir", dir]);
        }
        all.extend_from_slice(&["--runtime", runtime, image, id]);
        all.extend_from_slice(args);
        all
    }
}

/// One row of `ctr task ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: String,
    /// `None` when the PID column is not a number.
    pub pid: Option<u32>,
    /// e.g. `RUNNING`, `STOPPED`, `PAUSED`.
    pub status: String,
}
