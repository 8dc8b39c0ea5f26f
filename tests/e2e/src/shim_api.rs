//! A wasmpod shim driven through its ttrpc task API directly, the way containerd drives it, for
//! what `ctr` cannot show: the exact status code of an error, two `Create`s of one id at once
//! (containerd serialises them on the snapshot), the shim's own processes.
//!
//! [`DirectShim::start`] runs the shim's `start` action in a [`Bundle`] this module wrote itself
//! (config.json and a ready rootfs, so `Create` gets no rootfs mounts), connects to the address it
//! prints, and on drop deletes every task it created, shuts the shim down and runs the `delete`
//! action for whatever is left. The shim publishes its events to the private containerd, which
//! knows nothing of these tasks (namespace [`NAMESPACE`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use containerd_shim_protos::api;
use containerd_shim_protos::shim_sync::TaskClient;
use containerd_shim_protos::ttrpc::{self, Code};
use serde_json::json;

use crate::config::TTRPC_SOCKET;
use crate::containerd::{host_marker, HOST_MARKER_VAR};
use crate::Env;

/// The containerd namespace of directly driven shims (their state root is
/// `/run/wasmpod/<NAMESPACE>`).
pub const NAMESPACE: &str = "wasmpod-direct";

/// How long one task API call may take (a Create may compile a module on 2 busy cores).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A bundle written by the test: `config.json`, a `rootfs` with a static busybox at
/// `/bin/busybox`, and a regular file `log` where the shim daemon started in it logs.
pub struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    /// A bundle for container `id` running `args` (native busybox, or a module written into the
    /// rootfs with [`Bundle::write`]).
    pub fn new(env: &Env, id: &str, args: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("bundle-")
            .tempdir_in(env.containerd().base())
            .context("creating a bundle directory")?;
        let rootfs = dir.path().join("rootfs");
        for sub in ["bin", "proc", "dev", "tmp"] {
            std::fs::create_dir_all(rootfs.join(sub))?;
        }
        // A hard link when /tmp and /bin share a file system: many bundles cost no space.
        let busybox = rootfs.join("bin/busybox");
        if std::fs::hard_link("/bin/busybox", &busybox).is_err() {
            std::fs::copy("/bin/busybox", &busybox)
                .context("copying /bin/busybox (apt-get install busybox-static)")?;
        }
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/bin"],
                "cwd": "/",
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs"},
            "hostname": "direct",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {
                "cgroupsPath": format!("/default/{id}"),
                "namespaces": [
                    {"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                    {"type": "mount"}, {"type": "network"}
                ]
            }
        });
        std::fs::write(dir.path().join("config.json"), serde_json::to_vec(&spec)?)?;
        std::fs::write(dir.path().join("log"), b"")?;
        Ok(Self { dir })
    }

    /// Writes `bytes` to `path` inside the rootfs.
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let file = self.rootfs().join(path.trim_start_matches('/'));
        std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
}

/// A shim daemon started by its `start` action, and a task API client of it.
pub struct DirectShim {
    client: TaskClient,
    address: String,
    binary: PathBuf,
    containerd_address: String,
    group: String,
    /// The bundle the daemon was started in (its log is there).
    bundle: PathBuf,
    pid: u32,
    /// Tasks to delete on drop.
    created: Mutex<Vec<String>>,
}

impl DirectShim {
    /// Starts a shim daemon for group `group` in `bundle`, as containerd would for a container of
    /// that id, telling it containerd is at `containerd_address` (the private one, unless a
    /// case wants an unreachable containerd).
    pub fn start(env: &Env, bundle: &Bundle, group: &str) -> Result<Self> {
        let address = env.containerd().address().display().to_string();
        Self::start_with_containerd(env, bundle, group, &address)
    }

    /// [`DirectShim::start`] with another containerd address.
    pub fn start_with_containerd(
        env: &Env,
        bundle: &Bundle,
        group: &str,
        containerd_address: &str,
    ) -> Result<Self> {
        let binary = env.require_shim()?;
        let ttrpc_address = env.containerd().base().join(TTRPC_SOCKET);
        let containerd_bin =
            crate::paths::require_binary("containerd", "apt-get install containerd")?;
        let out = Command::new(&binary)
            .args(["-namespace", NAMESPACE, "-address", containerd_address])
            .arg("-publish-binary")
            .arg(&containerd_bin)
            .args(["-id", group, "start"])
            .current_dir(bundle.path())
            .env("TTRPC_ADDRESS", &ttrpc_address)
            .env(
                "WASMPOD_CACHE_DIR",
                env.containerd().base().join("module-cache"),
            )
            .env(HOST_MARKER_VAR, host_marker())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} start", binary.display()))?;
        if !out.status.success() {
            bail!(
                "{} start failed ({}): {}",
                binary.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let client = ttrpc::Client::connect(&address)
            .with_context(|| format!("connecting to the shim at {address}"))?;
        let mut shim = Self {
            client: TaskClient::new(client),
            address,
            binary,
            containerd_address: containerd_address.to_string(),
            group: group.to_string(),
            bundle: bundle.path().to_path_buf(),
            pid: 0,
            created: Mutex::new(Vec::new()),
        };
        let connected = shim
            .client
            .connect(ctx(), &api::ConnectRequest::default())
            .map_err(|e| anyhow!("Connect: {e}"))?;
        shim.pid = connected.shim_pid;
        Ok(shim)
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The task client, for calls this type has no helper for.
    pub fn client(&self) -> &TaskClient {
        &self.client
    }

    /// `Create` of `id` in `bundle` (no rootfs mounts: the bundle's rootfs is ready); returns
    /// the init's pid. The task is deleted on drop when it was created.
    pub fn create(&self, id: &str, bundle: &Bundle) -> Result<u32, ttrpc::Error> {
        self.create_with(id, bundle, |_| {})
    }

    /// [`DirectShim::create`] with the request changed by `edit` first.
    pub fn create_with(
        &self,
        id: &str,
        bundle: &Bundle,
        edit: impl FnOnce(&mut api::CreateTaskRequest),
    ) -> Result<u32, ttrpc::Error> {
        let mut request = api::CreateTaskRequest {
            id: id.to_string(),
            bundle: bundle.path().display().to_string(),
            ..Default::default()
        };
        edit(&mut request);
        let created = self.client.create(ctx(), &request)?;
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id.to_string());
        Ok(created.pid)
    }

    pub fn start_task(&self, id: &str) -> Result<u32, ttrpc::Error> {
        let request = api::StartRequest {
            id: id.to_string(),
            ..Default::default()
        };
        self.client.start(ctx(), &request).map(|r| r.pid)
    }

    pub fn state(&self, id: &str) -> Result<api::StateResponse, ttrpc::Error> {
        let request = api::StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        self.client.state(ctx(), &request)
    }

    pub fn kill(&self, id: &str, signal: u32) -> Result<(), ttrpc::Error> {
        let request = api::KillRequest {
            id: id.to_string(),
            signal,
            ..Default::default()
        };
        self.client.kill(ctx(), &request).map(|_| ())
    }

    /// `Wait`: the exit status.
    pub fn wait(&self, id: &str) -> Result<u32, ttrpc::Error> {
        let request = api::WaitRequest {
            id: id.to_string(),
            ..Default::default()
        };
        self.client.wait(ctx(), &request).map(|r| r.exit_status)
    }

    pub fn delete(&self, id: &str) -> Result<(), ttrpc::Error> {
        let request = api::DeleteRequest {
            id: id.to_string(),
            ..Default::default()
        };
        self.client.delete(ctx(), &request)?;
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|c| c != id);
        Ok(())
    }

    /// `Exec` of `args` as `exec_id` in running task `id`, then its `Start`; returns its pid.
    pub fn exec(&self, id: &str, exec_id: &str, args: &[&str]) -> Result<u32, ttrpc::Error> {
        let process = json!({
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin"],
            "cwd": "/"
        });
        let spec = containerd_shim_protos::protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: process.to_string().into_bytes(),
            ..Default::default()
        };
        let request = api::ExecProcessRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            spec: Some(spec).into(),
            ..Default::default()
        };
        self.client.exec(ctx(), &request)?;
        let start = api::StartRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.client.start(ctx(), &start).map(|r| r.pid)
    }

    /// `Wait` for exec `exec_id` of task `id`, then its `Delete`; returns its exit status.
    pub fn wait_and_delete_exec(&self, id: &str, exec_id: &str) -> Result<u32, ttrpc::Error> {
        let wait = api::WaitRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let code = self.client.wait(ctx(), &wait)?.exit_status;
        let delete = api::DeleteRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.client.delete(ctx(), &delete)?;
        Ok(code)
    }

    /// What the daemon logged (it was started in `bundle`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.bundle.join("log")).unwrap_or_default()
    }

    fn teardown(&self) {
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        for id in &created {
            let _ = self.kill(id, libc::SIGKILL as u32);
            let _ = self.wait(id);
            let _ = self.delete(id);
        }
        let _ = self
            .client
            .shutdown(ctx(), &api::ShutdownRequest::default());
        let gone = crate::leaks::wait_until(Duration::from_secs(10), || {
            !Path::new(&format!("/proc/{}", self.pid)).exists()
        });
        if !gone && self.pid > 0 {
            // SAFETY: a signal to the daemon this value started (its pid from Connect).
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
        for id in created.iter().chain(std::iter::once(&self.group)) {
            let _ = Command::new(&self.binary)
                .args([
                    "-namespace",
                    NAMESPACE,
                    "-address",
                    &self.containerd_address,
                ])
                .args(["-id", id, "-bundle"])
                .arg(&self.bundle)
                .arg("delete")
                .current_dir(&self.bundle)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let socket = self.address.trim_start_matches("unix://");
        if !gone {
            let _ = std::fs::remove_file(socket);
        }
    }
}

impl Drop for DirectShim {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(CALL_TIMEOUT.as_nanos() as i64)
}

/// The status code of a failed call (`None` for a transport error).
pub fn code_of(error: &ttrpc::Error) -> Option<Code> {
    match error {
        ttrpc::Error::RpcStatus(status) => Some(status.code()),
        _ => None,
    }
}

/// The status message of a failed call, or the error itself.
pub fn message_of(error: &ttrpc::Error) -> String {
    match error {
        ttrpc::Error::RpcStatus(status) => status.message().to_string(),
        other => other.to_string(),
    }
}

/// A task API result as an `anyhow` one whose error names the call (`what: message`).
pub trait ApiResult<T> {
    /// `self`, its error turned into `what: <status message>`.
    fn api(self, what: &str) -> Result<T>;
}

impl<T> ApiResult<T> for Result<T, ttrpc::Error> {
    fn api(self, what: &str) -> Result<T> {
        self.map_err(|e| anyhow::anyhow!("{what}: {}", message_of(&e)))
    }
}

/// Fails unless `result` failed with `code`; returns its message.
pub fn expect_code<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, ttrpc::Error>,
    code: Code,
) -> Result<String> {
    match result {
        Ok(v) => bail!("{what} should fail with {code:?}, it succeeded: {v:?}"),
        Err(e) if code_of(&e) == Some(code) => Ok(message_of(&e)),
        Err(e) => bail!(
            "{what} should fail with {code:?}, got {:?}: {}",
            code_of(&e),
            message_of(&e)
        ),
    }
}

/// The pids whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(parent))
        .collect()
}

/// The parent pid of `pid` (from `/proc/PID/stat`).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may contain spaces, in parentheses: state, then ppid.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
