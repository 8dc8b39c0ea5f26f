//! Pods with `shareProcessNamespace: true` on this cgroup v1 host: every container joins the
//! sandbox's PID namespace, and native and wasm containers see each other's processes.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::{container_config, in_pod_pid_namespace, sandbox_in_pod_pid_namespace};
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    cases![cri_shared_process_namespace]
}

/// The pid of host process `pid` in its own (innermost) PID namespace: the last `NSpid`.
fn pid_in_namespace(pid: u32) -> Result<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|ids| ids.split_whitespace().last())
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("no NSpid in /proc/{pid}/status"))
}

/// The pod's next pids (from `last` on) are free on the host: a pid of the pod's namespace
/// that names no host process is what made libcontainer 0.7's v1 cgroup mount fail.
fn free_host_pids_from(span: u32) -> Result<u32> {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")?
        .trim()
        .parse()?;
    let free = |n: u32| !Path::new(&format!("/proc/{n}")).exists();
    (max / 2..max - span)
        .rev()
        .step_by(span as usize)
        .find(|&last| (last + 1..=last + span).all(free))
        .context("no run of free host pids")
}

/// Makes the next pid of sandbox `pid`'s PID namespace `last + 1` (as root on the host).
fn set_next_pid(sandbox: u32, last: u32) -> Result<()> {
    let out = Command::new("nsenter")
        .args(["--target", &sandbox.to_string(), "--pid", "--", "sh", "-c"])
        .arg(format!("echo {last} > /proc/sys/kernel/ns_last_pid"))
        .output()
        .context("nsenter (util-linux)")?;
    ensure!(out.status.success(), "setting ns_last_pid: {out:?}");
    Ok(())
}

/// A native and a wasm container in a pod that shares its PID namespace: both run in the
/// sandbox's PID namespace, the native `ps` lists the wasm container's init and the pod's
/// pause process, and the native container sees its own cgroup at /sys/fs/cgroup. Their pids
/// in the pod name no host process.
fn cri_shared_process_namespace(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run_with(
        cri,
        "shared-pid",
        env.cri_handler(),
        &env.pod_logs_root(),
        sandbox_in_pod_pid_namespace,
    )?;
    let sandbox = init_pid(env, &pod.id)?;
    let last = free_host_pids_from(64)?;
    set_next_pid(sandbox, last)?;
    let wasm = pod.start(&in_pod_pid_namespace(container_config(
        "wasm",
        WASM_IMAGE,
        &["/testprog.wasm", "sleep", "600"],
    )))?;
    let native = pod.start(&in_pod_pid_namespace(container_config(
        "native",
        BUSYBOX_IMAGE,
        &["sleep", "600"],
    )))?;
    wait_state(cri, &wasm, ContainerState::ContainerRunning)?;
    wait_state(cri, &native, ContainerState::ContainerRunning)?;

    let wasm_pid = init_pid(env, &wasm)?;
    let native_pid = init_pid(env, &native)?;
    for (id, pid) in [(&wasm, wasm_pid), (&native, native_pid)] {
        ensure!(
            namespace(pid, "pid")? == namespace(sandbox, "pid")?,
            "container {id} is not in the sandbox's PID namespace"
        );
        let inner = pid_in_namespace(pid)?;
        ensure!(
            inner > last,
            "container {id} is pid {inner} in the pod, expected one above {last}"
        );
    }
    let out = cri.exec_sync(&native, &["ps", "-o", "pid"], 10)?;
    let listed: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for (what, pid) in [
        ("the wasm container's init", wasm_pid),
        ("the pause process", sandbox),
    ] {
        let inner = pid_in_namespace(pid)?;
        ensure!(
            listed.contains(&inner),
            "native ps does not list {what} (pid {inner} in the pod): {listed:?} {out:?}"
        );
    }
    let out = cri.exec_sync(&native, &["ls", "/sys/fs/cgroup/memory"], 10)?;
    ensure!(
        out.exit_code == 0
            && String::from_utf8_lossy(&out.stdout).contains("memory.limit_in_bytes"),
        "the native container's memory cgroup is not at /sys/fs/cgroup/memory: {out:?}"
    );
    remove_and_assert_gone(env, &mut pod, &[&wasm, &native])
}
