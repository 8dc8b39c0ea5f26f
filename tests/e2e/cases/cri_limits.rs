//! Resource limits through CRI: OOM for native and wasm containers (exit 137, reason
//! OOMKilled) and UpdateContainerResources on running containers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::{ContainerState, LinuxContainerResources};
use wasmpod_e2e::cri::pod::{container_config, with_memory_limit, with_mount};
use wasmpod_e2e::cri::CriClient;
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, leaks, Case, Env, BUSYBOX_IMAGE, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    cases![
        cri_native_memory_hog_is_oom_killed,
        cri_wasm_guest_past_its_limit_is_oom_killed,
        cri_update_resources_changes_cgroup_limits,
        cri_update_reaches_a_running_wasm_guest,
    ]
}

const MIB: i64 = 1 << 20;

/// A native `dd` with a 64 MiB buffer under a 16 MiB limit: the kernel kills it, ContainerStatus
/// says 137 and OOMKilled. The same dd without a limit completes (so the limit is the cause).
fn cri_native_memory_hog_is_oom_killed(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "native-oom", env.cri_handler(), &env.pod_logs_root())?;
    const DD: &[&str] = &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];

    let free = pod.start(&container_config("free", BUSYBOX_IMAGE, DD))?;
    expect_exit(&wait_exited(cri, &free)?, 0, "Completed")?;

    let hog = pod.start(&with_memory_limit(
        container_config("hog", BUSYBOX_IMAGE, DD),
        16 * MIB,
    ))?;
    expect_exit(&wait_exited(cri, &hog)?, 137, "OOMKilled")?;
    remove_and_assert_gone(env, &mut pod, &[&free, &hog])
}

/// A wasm guest growing its memory past a 32 MiB limit is stopped by the engine, not the kernel:
/// 137, OOMKilled (from our TaskOOM event), and the cause in its log. A guest under the limit
/// is not reported.
fn cri_wasm_guest_past_its_limit_is_oom_killed(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "wasm-oom", env.cri_handler(), &env.pod_logs_root())?;

    let grower = pod.start(&with_memory_limit(
        container_config(
            "grower",
            WASM_IMAGE,
            &["/testprog.wasm", "grow-memory", "100"],
        ),
        32 * MIB,
    ))?;
    expect_exit(&wait_exited(cri, &grower)?, 137, "OOMKilled")?;
    let (stdout, stderr) = read_log(&pod.log_path("grower"), "exceeded its memory limit")?;
    ensure!(
        stderr.contains("exceeded its memory limit") && !stdout.contains("grew"),
        "grower log: stdout {stdout:?}, stderr {stderr:?}"
    );

    let modest = pod.start(&with_memory_limit(
        container_config(
            "modest",
            WASM_IMAGE,
            &["/testprog.wasm", "grow-memory", "4"],
        ),
        32 * MIB,
    ))?;
    expect_exit(&wait_exited(cri, &modest)?, 0, "Completed")?;
    remove_and_assert_gone(env, &mut pod, &[&grower, &modest])
}

/// UpdateContainerResources on a running wasm and a running native container changes the memory
/// limit and CPU shares in their cgroups (for a wasm guest, on engines whose guests can follow).
fn cri_update_resources_changes_cgroup_limits(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "update", env.cri_handler(), &env.pod_logs_root())?;
    let wasm = pod.start(&with_memory_limit(
        container_config("wasm", WASM_IMAGE, &["/testprog.wasm", "sleep", "600"]),
        128 * MIB,
    ))?;
    let native = pod.start(&with_memory_limit(
        container_config("native", BUSYBOX_IMAGE, &["sleep", "600"]),
        128 * MIB,
    ))?;
    let ids: &[&String] = if env.engine().live_memory_limit() {
        &[&wasm, &native]
    } else {
        &[&native]
    };
    for &id in ids {
        wait_state(cri, id, ContainerState::ContainerRunning)?;
        let memory = pod.cgroup_dir("memory").join(id);
        ensure!(
            read_number(memory.join("memory.limit_in_bytes"))? == 128 * MIB,
            "container {id}: the initial limit is not in its cgroup"
        );
        cri.update_resources(
            id,
            LinuxContainerResources {
                memory_limit_in_bytes: 64 * MIB,
                cpu_shares: 512,
                ..Default::default()
            },
        )?;
        let limit = read_number(memory.join("memory.limit_in_bytes"))?;
        ensure!(
            limit == 64 * MIB,
            "container {id}: memory limit {limit} after update"
        );
        let cpu = pod.cgroup_dir("cpu").join(id);
        let shares = read_number(cpu.join("cpu.shares"))?;
        ensure!(
            shares == 512,
            "container {id}: cpu.shares {shares} after update"
        );
        let status = cri.container_status(id)?;
        ensure!(
            status.state == ContainerState::ContainerRunning as i32,
            "container {id} is {:?} after the update",
            status.state
        );
    }
    remove_and_assert_gone(env, &mut pod, &[&wasm, &native])
}

fn update_memory(cri: &CriClient, id: &str, bytes: i64) -> Result<()> {
    cri.update_resources(
        id,
        LinuxContainerResources {
            memory_limit_in_bytes: bytes,
            ..Default::default()
        },
    )
}

/// Asks the `grow-to-file` guest for `mib` MiB through its control file and waits until it
/// says it has them.
fn grow_to(ctl: &Path, mib: u32) -> Result<()> {
    std::fs::write(ctl.join("target"), mib.to_string())?;
    let want = mib.to_string();
    leaks::poll(
        Duration::from_secs(10),
        &format!("the guest at {mib} MiB"),
        || {
            let at = std::fs::read_to_string(ctl.join("target.at")).unwrap_or_default();
            Ok((at == want).then_some(()))
        },
    )
}

/// A running wasm guest's memory cap follows UpdateContainerResources: under 64 MiB (a 48 MiB
/// cap) it grows to 40 MiB; raised to 96 MiB it grows to 60 MiB, past the old cap; lowered to
/// 72 MiB (a 56 MiB cap, below its size) its next growth stops it as an OOM (137, OOMKilled).
/// An engine whose guests cannot follow refuses the update and changes nothing.
fn cri_update_reaches_a_running_wasm_guest(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "update-guest", env.cri_handler(), &env.pod_logs_root())?;
    let ctl = tempfile::Builder::new()
        .prefix("grow-ctl-")
        .tempdir_in(env.containerd().base())?;
    let config = with_memory_limit(
        container_config(
            "grower",
            WASM_IMAGE,
            &["/testprog.wasm", "grow-to-file", "/ctl/target"],
        ),
        64 * MIB,
    );
    let grower = pod.start(&with_mount(config, ctl.path(), "/ctl", false))?;
    wait_state(cri, &grower, ContainerState::ContainerRunning)?;
    grow_to(ctl.path(), 40)?;

    if !env.engine().live_memory_limit() {
        let refused = update_memory(cri, &grower, 96 * MIB).unwrap_err();
        ensure!(
            format!("{refused:#}").contains("cannot change a running wasm guest's memory limit"),
            "update on {}: {refused:#}",
            env.engine().name()
        );
        return remove_and_assert_gone(env, &mut pod, &[&grower]);
    }
    update_memory(cri, &grower, 96 * MIB)?;
    grow_to(ctl.path(), 60)?;
    update_memory(cri, &grower, 72 * MIB)?;
    std::fs::write(ctl.path().join("target"), "64")?;
    expect_exit(&wait_exited(cri, &grower)?, 137, "OOMKilled")?;
    let (_, stderr) = read_log(&pod.log_path("grower"), "exceeded its memory limit")?;
    ensure!(
        stderr.contains("exceeded its memory limit"),
        "grower stderr: {stderr:?}"
    );
    remove_and_assert_gone(env, &mut pod, &[&grower])
}

fn read_number(path: PathBuf) -> Result<i64> {
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: not a number: {text:?}", path.display()))
}
