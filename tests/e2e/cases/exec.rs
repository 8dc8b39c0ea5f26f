//! Exec into a running container (`ctr task exec`): a native binary into a native container and
//! a wasm module into a wasm container, each checked from the host to be in every namespace and
//! cgroup of the container.

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_e2e::leaks::poll;
use wasmpod_e2e::{cases, Case, Env, HELLO_TXT};

use crate::cri_support::namespace;
use crate::support::{kill_and_delete, run_detached, task_ls_pid, wait_status, Cleanup};

pub fn cases() -> Vec<Case> {
    cases![
        exec_native_into_running_container,
        exec_wasm_into_running_container
    ]
}

fn exec(env: &Env, id: &str, exec_id: &str, args: &[&str]) -> Result<wasmpod_e2e::CmdOutput> {
    let mut all = vec!["task", "exec", "--exec-id", exec_id, id];
    all.extend_from_slice(args);
    env.ctr().run(&all)
}

/// Namespaces an exec must share with the container's init.
const SHARED_NAMESPACES: &[&str] = &["mnt", "pid", "net", "ipc", "uts", "cgroup", "user"];

/// Starts the long-running exec `args` (`exec_id`) in container `id`, finds its process from
/// the host, and checks that it has every namespace and cgroup of the container's init; then
/// kills the exec and waits for it.
fn ensure_exec_joins_container(env: &Env, id: &str, exec_id: &str, args: &[&str]) -> Result<()> {
    let init = task_ls_pid(env, id)?;
    let mut all = vec!["task", "exec", "--exec-id", exec_id, id];
    all.extend_from_slice(args);
    let running = env.ctr().spawn(&all, false)?;
    let what = format!("a process of exec {exec_id} in `ctr task ps {id}`");
    let found = poll(Duration::from_secs(10), &what, || {
        let pids = env.ctr().task_pids(id)?;
        Ok(pids.into_iter().find(|&p| p != init))
    });
    let checked = found.and_then(|pid| {
        for kind in SHARED_NAMESPACES {
            let (theirs, ours) = (namespace(pid, kind)?, namespace(init, kind)?);
            ensure!(
                theirs == ours,
                "exec {exec_id} (pid {pid}) is in {theirs}, the container (pid {init}) in {ours}"
            );
        }
        let cgroups = |p: u32| std::fs::read_to_string(format!("/proc/{p}/cgroup"));
        let (theirs, ours) = (cgroups(pid)?, cgroups(init)?);
        ensure!(
            theirs == ours,
            "exec {exec_id} (pid {pid}) is in cgroups\n{theirs}\nthe container in\n{ours}"
        );
        Ok(())
    });
    let killed = env
        .ctr()
        .run(&["task", "kill", "--exec-id", exec_id, "-s", "SIGKILL", id])?;
    let out = running.wait(Duration::from_secs(10))?;
    checked?;
    ensure!(killed.success(), "killing exec {exec_id}: {killed}");
    ensure!(
        out.status == Some(137),
        "exec {exec_id} killed with SIGKILL: {out}"
    );
    Ok(())
}

fn exec_native_into_running_container(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let id = env.unique_id("exec-native");
    let _cleanup = Cleanup::new(env, &[&id]);
    run_detached(env, &env.runtime(), &[], image, &id, &["sleep", "60"])?;
    wait_status(env, &id, "RUNNING", Duration::from_secs(20))?;

    let script = "echo out; echo err >&2; cat /proc/1/cmdline; echo; cat /proc/self/cgroup; exit 5";
    let out = exec(env, &id, "e1", &["sh", "-c", script])?.expect_code(5)?;
    ensure!(out.stdout.starts_with("out\n"), "stdout: {out}");
    ensure!(out.stderr.contains("err"), "stderr: {out}");
    // Same PID namespace as the container: its PID 1 is the container's sleep.
    ensure!(
        out.stdout.contains("sleep\x0060"),
        "not in the container's pid namespace: {out}"
    );
    ensure!(
        out.stdout.contains(&format!("/default/{id}")),
        "not in the container's cgroup: {out}"
    );

    ensure_exec_joins_container(env, &id, "e3", &["sleep", "60"])?;

    let missing = exec(env, &id, "e2", &["/no/such/binary"])?;
    ensure!(
        !missing.success() && missing.stderr.contains("not found in rootfs"),
        "a missing binary must fail clearly: {missing}"
    );
    // The container is unaffected by both execs.
    wait_status(env, &id, "RUNNING", Duration::from_secs(5))?;
    kill_and_delete(env, &id)?;
    env.assert_no_leaks(&id)
}

fn exec_wasm_into_running_container(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("exec-wasm");
    let _cleanup = Cleanup::new(env, &[&id]);
    run_detached(
        env,
        &env.runtime(),
        &[],
        image,
        &id,
        &["/testprog.wasm", "sleep", "60"],
    )?;
    wait_status(env, &id, "RUNNING", Duration::from_secs(20))?;

    let out = exec(
        env,
        &id,
        "w1",
        &["/testprog.wasm", "cat", "/data/hello.txt"],
    )?
    .ok()?;
    ensure!(out.stdout == HELLO_TXT, "wasm exec output: {out}");
    exec(env, &id, "w2", &["/testprog.wasm", "exit", "4"])?.expect_code(4)?;
    let trap = exec(env, &id, "w3", &["/testprog.wasm", "trap"])?.expect_code(134)?;
    ensure!(trap.stderr.contains("wasm trap"), "trap message: {trap}");
    ensure_exec_joins_container(env, &id, "w4", &["/testprog.wasm", "sleep", "60"])?;

    wait_status(env, &id, "RUNNING", Duration::from_secs(5))?;
    kill_and_delete(env, &id)?;
    env.assert_no_leaks(&id)
}
