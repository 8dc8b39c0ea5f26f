//! Resource limits through CRI: OOM for native and wasm containers (exit 137, reason
//! OOMKilled) and UpdateContainerResources on running containers.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::{ContainerState, LinuxContainerResources};
use wasmpod_e2e::cri::pod::{container_config, with_memory_limit};
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    cases![
        cri_native_memory_hog_is_oom_killed,
        cri_wasm_guest_past_its_limit_is_oom_killed,
        cri_update_resources_changes_cgroup_limits,
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
/// limit and CPU shares in their cgroups.
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
    for id in [&wasm, &native] {
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

fn read_number(path: PathBuf) -> Result<i64> {
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: not a number: {text:?}", path.display()))
}
