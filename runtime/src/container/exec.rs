//! Exec: an extra process in a running container, as `ctr task exec` and CRI ExecSync ask. The
//! process goes through the same detection as the container's own (a native binary or a wasm
//! module inside the container's rootfs) and is started by libcontainer's tenant builder in a
//! zygote worker, in the container's namespaces and cgroup.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use super::create::{
    log_zygote_module, prepare, uses_systemd_cgroups, CreateError, Created, Preparer,
};
use crate::detect::detect;
use crate::engine::WasmEngine;
use crate::spec::{self, SpecError};
use crate::zygote::{CreateRequest, Zygote};

pub struct ExecOptions<'a> {
    pub id: &'a str,
    pub exec_id: &'a str,
    /// containerd's bundle of the container.
    pub bundle: &'a Path,
    pub root: &'a Path,
    /// The OCI process, as JSON (containerd's `ExecProcessRequest.spec`).
    pub process_json: &'a [u8],
    pub stdin: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
}

pub fn exec<E: WasmEngine>(
    zygote: &Zygote,
    preparer: &Preparer<E>,
    opts: &ExecOptions,
) -> Result<Created, CreateError> {
    let process: Process = serde_json::from_slice(opts.process_json)
        .map_err(|e| SpecError::Bad(format!("exec {}: invalid process spec: {e}", opts.exec_id)))?;
    let mut spec = spec::load(opts.bundle)?;
    spec.set_process(Some(process.clone()));
    spec::validate(&spec)?;
    let rootfs = spec::rootfs(&spec, opts.bundle);
    let decision = detect(&spec, &rootfs)?;
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
    };
    let spawned = prepared.finish(zygote.create(&request, None))?;
    log_zygote_module(opts.id, prepared.wasm, spawned.module_reused);
    Ok(Created {
        pid: spawned.pid,
        wasm: prepared.wasm,
        reason: decision.reason,
        rootfs,
    })
}
