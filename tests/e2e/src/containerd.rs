//! A private containerd daemon, started as a child process with every path in a temporary
//! base directory. It never talks to (or replaces) a system containerd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::config::{self, PodNetwork, CNI_CONF_DIR, GRPC_SOCKET};
use crate::ctr::Ctr;
use crate::leaks::{self, wait_until};
use crate::{mounts, paths};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_FILE: &str = "containerd.log";
/// The namespaces the suite uses, ctr's and CRI's: [`Containerd::stop`] removes their tasks and
/// the leak checks look for shim sockets in each.
pub const NAMESPACES: &[&str] = &["default", "k8s.io"];

/// A variable set only in every private containerd's environment: it must never reach a guest
/// (issue 10: the guest process holds nothing of the host). Its value is [`host_marker`].
pub const HOST_MARKER_VAR: &str = "WASMPOD_E2E_HOST_MARKER";

/// The value of [`HOST_MARKER_VAR`]: random per test process, so a match cannot be a leftover.
pub fn host_marker() -> &'static str {
    static MARKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("host-marker-{}-{nanos:x}", std::process::id())
    })
}

/// Makes the pod networks of daemons started by one process distinct.
static NEXT_NETWORK: AtomicU32 = AtomicU32::new(0);

/// A running private containerd; stopped and cleaned up by [`Containerd::stop`] or on drop.
#[derive(Debug)]
pub struct Containerd {
    base: Option<TempDir>,
    base_path: PathBuf,
    address: PathBuf,
    containerd: PathBuf,
    shim_dir: PathBuf,
    network: PodNetwork,
    child: Option<Child>,
    pid: u32,
    ctr: Ctr,
    ready: bool,
    /// Set in the daemon's environment, which its shims inherit.
    shim_env: Vec<(String, String)>,
}

impl Containerd {
    /// Starts containerd with `shim_dir` first on its `PATH` and waits until it answers.
    /// With `E2E_KEEP_BASE` set, the base directory is kept after stopping (for debugging).
    pub fn start(shim_dir: &Path) -> Result<Self> {
        Self::start_with_env(shim_dir, &[])
    }

    /// [`Containerd::start`] with `shim_env` added to the daemon's environment, which its
    /// shims inherit (e.g. `WASMPOD_CACHE_MAX_BYTES`).
    pub fn start_with_env(shim_dir: &Path, shim_env: &[(&str, &str)]) -> Result<Self> {
        let containerd = paths::require_binary("containerd", "apt-get install containerd")?;
        let ctr_bin = paths::require_binary("ctr", "apt-get install containerd")?;
        paths::require_binary("runc", "apt-get install runc")?;

        let containerd = containerd.to_path_buf();
        let base = tempfile::Builder::new()
            .prefix("wasmpod-e2e-")
            .tempdir_in("/tmp")
            .context("creating the containerd base directory")?;
        let base_path = base.path().to_path_buf();
        std::fs::write(
            base_path.join("config.toml"),
            config::containerd_config(&base_path),
        )
        .context("writing config.toml")?;
        let seed = std::process::id()
            .wrapping_mul(4)
            .wrapping_add(NEXT_NETWORK.fetch_add(1, Ordering::Relaxed));
        let network = PodNetwork::from_seed(seed);
        let conf_dir = base_path.join(CNI_CONF_DIR);
        std::fs::create_dir_all(&conf_dir).context("creating the CNI config directory")?;
        std::fs::write(
            conf_dir.join("10-wasmpod.conflist"),
            config::cni_conflist(&base_path, &network),
        )
        .context("writing the CNI conflist")?;
        let fifo_dir = base_path.join("fifo");
        std::fs::create_dir(&fifo_dir).context("creating the fifo directory")?;

        let address = base_path.join(GRPC_SOCKET);
        let mut daemon = Containerd {
            base: Some(base),
            pid: 0,
            child: None,
            ctr: Ctr::new(&ctr_bin, &address).with_fifo_dir(&fifo_dir),
            address,
            containerd,
            shim_dir: shim_dir.to_path_buf(),
            network,
            base_path,
            ready: false,
            shim_env: shim_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        daemon.spawn()?;
        Ok(daemon)
    }

    /// Starts the daemon process on the existing base directory and waits until it answers.
    fn spawn(&mut self) -> Result<()> {
        // Appends: a restarted daemon keeps the log of its predecessor.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening containerd.log")?;
        let child = Command::new(&self.containerd)
            .arg("--config")
            .arg(self.base_path.join("config.toml"))
            .env("PATH", search_path(&self.shim_dir))
            // Shims inherit it: each run gets its own compiled-module cache.
            .env("WASMPOD_CACHE_DIR", self.base_path.join("module-cache"))
            .env(HOST_MARKER_VAR, host_marker())
            .envs(self.shim_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.containerd.display()))?;
        self.pid = child.id();
        self.child = Some(child);
        self.ready = false;
        self.wait_ready()?;
        self.ready = true;
        Ok(())
    }

    /// Kills containerd with SIGKILL, as a crash would, and starts it again on the same root,
    /// state and sockets. Shims and their containers keep running meanwhile.
    pub fn restart_after_crash(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("containerd is not running");
        };
        child.kill().context("killing containerd")?;
        child.wait().context("reaping containerd")?;
        self.spawn()
    }

    /// The pod network (CNI bridge and subnet) of this daemon.
    pub fn network(&self) -> &PodNetwork {
        &self.network
    }

    /// The gRPC socket (`ctr -a`).
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The base directory holding config, root, state, sockets and the log.
    pub fn base(&self) -> &Path {
        &self.base_path
    }

    /// containerd's own pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A `ctr` client for namespace `default` of this daemon.
    pub fn ctr(&self) -> &Ctr {
        &self.ctr
    }

    /// The path of containerd's log (stdout and stderr, debug level).
    pub fn log_path(&self) -> PathBuf {
        self.base_path.join(LOG_FILE)
    }

    /// The last `n` lines of containerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        match std::fs::read(self.log_path()) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            }
            Err(e) => format!("<cannot read {}: {e}>", self.log_path().display()),
        }
    }

    fn wait_ready(&mut self) -> Result<()> {
        let mut last = String::from("never tried");
        let mut exited = None;
        let ready = wait_until(START_TIMEOUT, || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
            }
            if !self.address.exists() {
                return false;
            }
            match self.ctr.run_timeout(&["version"], Duration::from_secs(5)) {
                Ok(out) if out.success() => true,
                Ok(out) => {
                    last = out.to_string();
                    false
                }
                Err(e) => {
                    last = format!("{e:#}");
                    false
                }
            }
        });
        if let Some(status) = exited {
            bail!(
                "containerd exited during startup ({status}); log:\n{}",
                self.log_tail(30)
            );
        }
        if !ready {
            bail!(
                "containerd did not answer `ctr version` within {START_TIMEOUT:?}; last: {last}\n\
                 log:\n{}",
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Kills leftover tasks, stops containerd, unmounts everything under the base directory and
    /// removes it. Safe to call twice. Reports every step that failed (all are attempted).
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let mut errors = Vec::new();
        // A daemon that never answered has no tasks; asking would only wait for a dial timeout.
        let killed = if self.ready {
            self.kill_tasks()
        } else {
            Ok(())
        };
        if let Err(e) = killed {
            errors.push(format!("killing tasks: {e:#}"));
        }
        // SAFETY: plain kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        if !wait_until(STOP_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_)))) {
            errors.push(format!(
                "containerd ignored SIGTERM for {STOP_TIMEOUT:?}; killed"
            ));
            let _ = child.kill();
        }
        let _ = child.wait();
        self.kill_orphan_shims(&mut errors);
        if let Err(e) = self.remove_bridge() {
            errors.push(format!("removing the pod bridge: {e:#}"));
        }
        if let Err(e) = mounts::unmount_all_under(&self.base_path) {
            errors.push(format!("unmounting: {e:#}"));
        }
        if let Some(base) = self.base.take() {
            if std::env::var_os("E2E_KEEP_BASE").is_some() {
                eprintln!("e2e: keeping {}", base.keep().display());
            } else if let Err(e) = base.close() {
                errors.push(format!("removing {}: {e}", self.base_path.display()));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("stopping containerd: {}", errors.join("; ")))
        }
    }

    /// In each of [`NAMESPACES`]: `ctr task ls`, then kill -9 and delete each task. Every case
    /// removes its own tasks, so a task found here is reported (and removed).
    fn kill_tasks(&self) -> Result<()> {
        let mut found = Vec::new();
        let mut failed = Vec::new();
        for namespace in NAMESPACES {
            let ctr = self
                .ctr
                .clone()
                .with_namespace(namespace)
                .with_timeout(Duration::from_secs(10));
            for id in ctr.task_list()? {
                found.push(format!("{namespace}/{id}"));
                let _ = ctr.task_kill(&id, "SIGKILL");
                let deleted = wait_until(Duration::from_secs(5), || {
                    ctr.run(&["task", "delete", "-f", &id])
                        .is_ok_and(|out| out.success())
                });
                if !deleted {
                    failed.push(format!("{namespace}/{id}"));
                }
            }
        }
        if !failed.is_empty() {
            bail!("tasks still alive at teardown {found:?}; could not delete {failed:?}");
        }
        if !found.is_empty() {
            bail!("tasks still alive at teardown (killed and deleted): {found:?}");
        }
        Ok(())
    }

    /// Removes the CNI bridge (the pods' veths went with their network namespaces).
    fn remove_bridge(&self) -> Result<()> {
        let link = Path::new("/sys/class/net").join(&self.network.bridge);
        if !link.exists() {
            return Ok(());
        }
        let status = Command::new("ip")
            .args(["link", "delete", &self.network.bridge])
            .status()
            .context("running `ip link delete` (apt-get install iproute2)")?;
        if !status.success() {
            bail!("`ip link delete {}` failed: {status}", self.network.bridge);
        }
        Ok(())
    }

    /// Shims of this daemon that outlived it (they are started with `-address OUR_SOCKET`).
    fn kill_orphan_shims(&self, errors: &mut Vec<String>) {
        let address = self.address.to_string_lossy();
        for pid in leaks::processes_matching(&address) {
            let is_shim = leaks::exe_name(pid).is_some_and(|n| n.starts_with("containerd-shim"));
            if !is_shim {
                continue;
            }
            let socket = leaks::cmdline(pid).and_then(|c| shim_socket_arg(&c));
            errors.push(format!("shim {pid} outlived containerd; killed"));
            // SAFETY: plain kill(2); the pid was just read from /proc.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            // A killed shim leaves its socket in /run/containerd/s; it is ours to remove.
            if let Some(socket) = socket {
                if !wait_until(Duration::from_secs(2), || leaks::cmdline(pid).is_none()) {
                    errors.push(format!("shim {pid} still alive 2 s after SIGKILL"));
                }
                let _ = std::fs::remove_file(socket);
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("e2e: {e:#}");
        }
    }
}

/// The path of `-socket unix:///run/containerd/s/HASH` in a shim command line.
fn shim_socket_arg(cmdline: &str) -> Option<PathBuf> {
    let mut words = cmdline.split(' ');
    words.find(|w| *w == "-socket")?;
    let path = PathBuf::from(words.next()?.strip_prefix("unix://")?);
    path.starts_with(leaks::SHIM_SOCKET_DIR).then_some(path)
}

/// `shim_dir` first, then the inherited `PATH` (or a standard one).
fn search_path(shim_dir: &Path) -> std::ffi::OsString {
    let inherited =
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let dirs = std::iter::once(shim_dir.to_path_buf()).chain(std::env::split_paths(&inherited));
    std::env::join_paths(dirs).unwrap_or(inherited)
}
