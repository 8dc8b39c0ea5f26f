//! What containerd reports of a running container and the limits it applies: `ctr task ps`,
//! `ctr task metrics`, the memory limit in the cgroup, and the OOM killer.

use anyhow::{ensure, Context, Result};
use wasmpod_e2e::{cases, Case, Env};

use crate::support::{
    kill_and_delete, memory_cgroup, run_detached, sleepers, task_ls_pid, Cleanup, Proc,
};

pub fn cases() -> Vec<Case> {
    cases![
        wasm_memory_limit_stops_guest_137,
        task_ps_lists_pid,
        task_metrics_memory,
        memory_limit_in_cgroup,
        native_memory_hog_oom_137,
    ]
}

/// `ctr task ps` lists the init pid (the PID of `ctr task ls`), a live host process whose
/// cgroups are `default/<id>`.
fn task_ps_lists_pid(env: &Env) -> Result<()> {
    env.require_shim()?;
    for (kind, image, args) in sleepers(env)? {
        let id = env.unique_id(&format!("ps-{kind}"));
        let _cleanup = Cleanup::new(env, &[&id]);
        run_detached(env, &env.runtime(), &[], image, &id, args)?;
        let init = task_ls_pid(env, &id)?;
        let ps = env.ctr().task_ps(&id)?.ok()?;
        let pids = env.ctr().task_pids(&id)?;
        ensure!(
            pids == [init],
            "{kind}: `ctr task ps` should list exactly the init pid {init}: {ps}"
        );
        let proc =
            Proc::of(init).with_context(|| format!("{kind}: init pid {init} not in /proc"))?;
        ensure!(
            proc.alive(),
            "{kind}: init {} is not running",
            proc.describe()
        );
        let cgroup = std::fs::read_to_string(format!("/proc/{init}/cgroup"))
            .with_context(|| format!("reading /proc/{init}/cgroup"))?;
        let want = format!("/default/{id}");
        for controller in ["memory", "pids", "cpu"] {
            let line = cgroup.lines().find(|l| {
                let mut f = l.splitn(3, ':');
                let _ = f.next();
                f.next()
                    .is_some_and(|c| c.split(',').any(|c| c == controller))
            });
            ensure!(
                line.is_some_and(|l| l.ends_with(&format!(":{want}"))),
                "{kind}: {controller} cgroup of init {init} is not {want}:\n{cgroup}"
            );
        }
        let procs = std::fs::read_to_string(memory_cgroup(&id).join("cgroup.procs"))
            .with_context(|| format!("{kind}: reading cgroup.procs of {id}"))?;
        ensure!(
            procs.lines().any(|l| l.trim() == init.to_string()),
            "{kind}: init {init} not in {}/cgroup.procs: {procs:?}",
            memory_cgroup(&id).display()
        );
        kill_and_delete(env, &id)?;
        env.assert_no_leaks(&id)?;
    }
    Ok(())
}

/// The memory usage in `ctr task metrics --format json` (cgroup v1: `memory.usage.usage`;
/// v2: `memory.usage`).
fn json_memory_usage(metrics: &serde_json::Value) -> Option<u64> {
    let memory = metrics.get("memory")?;
    let usage = memory.get("usage")?;
    usage
        .get("usage")
        .and_then(serde_json::Value::as_u64)
        .or_else(|| usage.as_u64())
}

/// The `memory.usage_in_bytes` row of the table `ctr task metrics` prints.
fn table_memory_usage(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|line| {
        let mut cols = line.split_whitespace();
        let name = cols.next()?;
        (name == "memory.usage_in_bytes" || name == "memory.usage")
            .then(|| cols.next()?.parse().ok())?
    })
}

fn task_metrics_memory(env: &Env) -> Result<()> {
    env.require_shim()?;
    for (kind, image, args) in sleepers(env)? {
        let id = env.unique_id(&format!("metrics-{kind}"));
        let _cleanup = Cleanup::new(env, &[&id]);
        run_detached(env, &env.runtime(), &[], image, &id, args)?;

        let table = env.ctr().run(&["task", "metrics", &id])?.ok()?;
        let usage = table_memory_usage(&table.stdout);
        ensure!(
            usage.is_some_and(|u| u > 0),
            "{kind}: no non-zero memory usage in `ctr task metrics`: {table}"
        );

        let json = env.ctr().task_metrics_json(&id)?;
        let usage = json_memory_usage(&json);
        ensure!(
            usage.is_some_and(|u| u > 0),
            "{kind}: no non-zero memory usage in the JSON metrics:\n{json:#}"
        );
        kill_and_delete(env, &id)?;
        env.assert_no_leaks(&id)?;
    }
    Ok(())
}

fn memory_limit_in_cgroup(env: &Env) -> Result<()> {
    env.require_shim()?;
    const LIMIT: &str = "33554432";
    for (kind, image, args) in sleepers(env)? {
        let id = env.unique_id(&format!("memlimit-{kind}"));
        let _cleanup = Cleanup::new(env, &[&id]);
        run_detached(
            env,
            &env.runtime(),
            &["--memory-limit", LIMIT],
            image,
            &id,
            args,
        )?;
        let file = memory_cgroup(&id).join("memory.limit_in_bytes");
        let limit = std::fs::read_to_string(&file)
            .with_context(|| format!("{kind}: reading {}", file.display()))?;
        ensure!(
            limit.trim() == LIMIT,
            "{kind}: {} is {:?}, want {LIMIT}",
            file.display(),
            limit.trim()
        );
        kill_and_delete(env, &id)?;
        env.assert_no_leaks(&id)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// OOM
// ---------------------------------------------------------------------------------------------

/// busybox dd mallocs a 64 MiB buffer and reads /dev/zero into it in one read, which touches
/// every page; with a 16 MiB limit (and no swap) the OOM killer SIGKILLs it: 137.
fn native_memory_hog_oom_137(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    const DD: &[&str] = &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];

    // Control: without a limit the same dd completes, so a 137 below is the limit's doing.
    let free = env.unique_id("oom-control");
    let _cleanup_free = Cleanup::new(env, &[&free]);
    let out = env.ctr().run_rm(&env.runtime(), image, &free, DD)?;
    ensure!(
        out.success() && out.stderr.contains("1+0 records out"),
        "without a memory limit, dd of a 64 MiB block should succeed: {out}"
    );
    env.assert_no_leaks(&free)?;

    let id = env.unique_id("oom");
    let _cleanup = Cleanup::new(env, &[&id]);
    let out = env.ctr().run_rm_flags(
        &env.runtime(),
        &["--memory-limit", "16777216"],
        image,
        &id,
        DD,
    )?;
    ensure!(
        out.status == Some(137),
        "a 64 MiB allocation under a 16 MiB limit should be OOM-killed (137): {out}"
    );
    env.assert_no_leaks(&id)
}

/// The container's memory limit also caps the wasm guest's linear memory (minus the engine's
/// headroom): growing past it ends the guest with 137 and a message naming the cause, before
/// the kernel's OOM killer would pick a victim. Under the limit the guest runs normally.
fn wasm_memory_limit_stops_guest_137(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let limit = "67108864";
    let id = env.unique_id("wasm-mem-limit");
    let out = env.ctr().run_rm_flags(
        &env.runtime(),
        &["--memory-limit", limit],
        image,
        &id,
        &["/testprog.wasm", "grow-memory", "100"],
    )?;
    ensure!(
        out.status == Some(137)
            && out.stderr.contains("exceeded its memory limit")
            && out.stdout.contains("allocated 32 MiB")
            && !out.stdout.contains("grew"),
        "a guest growing past its limit must end with 137 and the cause: {out}"
    );
    env.assert_no_leaks(&id)?;

    let id = env.unique_id("wasm-mem-ok");
    let out = env
        .ctr()
        .run_rm_flags(
            &env.runtime(),
            &["--memory-limit", limit],
            image,
            &id,
            &["/testprog.wasm", "grow-memory", "20"],
        )?
        .ok()?;
    ensure!(out.stdout.contains("grew"), "under the limit: {out}");
    env.assert_no_leaks(&id)
}
