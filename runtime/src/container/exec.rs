//! Exec: an extra process in a running container, as `ctr task exec` and CRI ExecSync ask. The
//! process goes through the same detection as the container's own (a native binary or a wasm
//! module, found in the running container's own view: rootfs and volumes) and is started by libcontainer's tenant builder in a
//! zygote worker, in the container's namespaces and cgroup.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::create::{log_zygote_module, uses_systemd_cgroups, CreateError, Created};
use super::prepare::{prepare, Preparer};
use crate::console::{terminal_of, ConsoleSocket};
use crate::detect::detect;
use crate::engine::WasmEngine;
use crate::resolve::View;
use crate::spec::{self, SpecError};
use crate::zygote::{CreateRequest, Zygote};

/// What containerd's `Exec` request says about an extra process.
pub struct ExecOptions<'a> {
    /// The container id.
    pub id: &'a str,
    /// The exec id, unique within the container.
    pub exec_id: &'a str,
    /// containerd's bundle of the container.
    pub bundle: &'a Path,
    /// libcontainer's state root.
    pub root: &'a Path,
    /// The container as its init process sees it ([`View::of_process`]): the program is
    /// looked up there, volumes included.
    pub view: &'a View,
    /// The OCI process, as JSON (containerd's `ExecProcessRequest.spec`).
    pub process_json: &'a [u8],
    /// containerd's stdin FIFO, if any.
    pub stdin: Option<PathBuf>,
    /// containerd's stdout FIFO, if any.
    pub stdout: Option<PathBuf>,
    /// containerd's stderr FIFO, if any.
    pub stderr: Option<PathBuf>,
    /// containerd asks for a terminal (`ctr task exec -t`, `kubectl exec -it`).
    pub terminal: bool,
}

/// Starts an extra process in running container `opts.id` (its namespaces, cgroup and
/// rootfs): detected and prepared like the container's own program, then created by a zygote
/// worker through libcontainer's tenant builder.
pub fn exec<E: WasmEngine>(
    zygote: &Zygote,
    preparer: &Preparer<E>,
    opts: &ExecOptions,
) -> Result<Created, CreateError> {
    let process: Process = serde_json::from_slice(opts.process_json)
        .map_err(|e| SpecError::Bad(format!("exec {}: invalid process spec: {e}", opts.exec_id)))?;
    let terminal = terminal_of(Some(&process), opts.terminal)?;
    let console_socket = terminal.then(ConsoleSocket::bind).transpose()?;
    let mut spec = spec::load(opts.bundle)?;
    spec.set_process(Some(process.clone()));
    spec::validate(&spec)?;
    let rootfs = spec::rootfs(&spec, opts.bundle);
    let decision = detect(&spec, opts.view)?;
    tracing::info!(id = opts.id, exec_id = opts.exec_id, reason = %decision.reason, "exec decision");
    let prepared = prepare(preparer, opts.id, decision.workload)?;

    let dir = opts.bundle.join("wasmpod");
    let path = dir.join(format!("exec-{}.json", opts.exec_id));
    let write_err = |source| SpecError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(write_err)?;
    let json = serde_json::to_vec(&process).map_err(|e| SpecError::Bad(e.to_string()))?;
    std::fs::write(&path, json).map_err(write_err)?;

    let request = CreateRequest {
        id: opts.id.to_string(),
        bundle: dir,
        root: opts.root.to_path_buf(),
        stdin: opts.stdin.clone(),
        stdout: opts.stdout.clone(),
        stderr: opts.stderr.clone(),
        systemd_cgroup: uses_systemd_cgroups(&spec),
        workload: prepared.workload.clone(),
        exec_process: Some(path),
        console_socket: console_socket.as_ref().map(|s| s.path().to_path_buf()),
    };
    let spawned = prepared.finish(zygote.create(&request, None))?;
    let console = match console_socket.map(ConsoleSocket::receive).transpose() {
        Ok(console) => console,
        Err(e) => {
            // Already running, without the terminal it was asked for: it must not stay.
            let _ = kill(Pid::from_raw(spawned.pid), Signal::SIGKILL);
            return Err(e.into());
        }
    };
    log_zygote_module(opts.id, prepared.wasm, spawned.module_reused);
    Ok(Created {
        pid: spawned.pid,
        wasm: prepared.wasm,
        reason: decision.reason,
        rootfs,
        console,
        module_digest: prepared.module_digest(),
    })
}
