//! Pause and resume: `ctr task pause` freezes the container's cgroup, so a busy loop gets no
//! CPU time until `ctr task resume`; SIGKILL ends a paused container; pausing a task that is
//! not running is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use wasmpod_e2e::{cases, Case, Env};

use crate::support::{
    kill_and_delete, kill_and_wait, run_detached, sleepers, spawn_run_rm, task_ls_pid,
    wait_running, wait_status, Cleanup, Proc, EXIT_LIMIT, EXIT_TIMEOUT,
};

pub fn cases() -> Vec<Case> {
    cases![
        pause_resume_wasm_busy,
        pause_resume_native_busy,
        pause_then_sigkill_ends_container,
        pause_signals_then_sigkill_ends_container,
        pause_sigterm_then_resume_exits_143,
        pause_resume_refused_when_not_applicable,
    ]
}

/// The cgroup v1 freezer controller (ctr puts containers in `default/<id>` below it).
const FREEZER_CGROUP: &str = "/sys/fs/cgroup/freezer";
/// How long the CPU time of a busy loop is watched.
const CPU_WINDOW: Duration = Duration::from_millis(500);
/// How long `ctr task ls` may take to show a status the shim has already set.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

fn freezer_cgroup(id: &str) -> PathBuf {
    Path::new(FREEZER_CGROUP).join("default").join(id)
}

/// The `freezer.state` of container `id` (`THAWED`, `FREEZING` or `FROZEN`).
fn freezer_state(id: &str) -> Result<String> {
    let path = freezer_cgroup(id).join("freezer.state");
    let state =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(state.trim().to_string())
}

/// utime + stime of `pid` (its whole thread group) in clock ticks, from `/proc/PID/stat`.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name may contain spaces and parentheses; the fields follow the last `)`,
    // starting with field 3 (state): utime (14) and stime (15) are at 11 and 12.
    let rest = text
        .rfind(')')
        .and_then(|at| text.get(at + 2..))
        .with_context(|| format!("malformed {path}: {text:?}"))?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no field {} in {path}: {text:?}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// The CPU ticks `pid` uses over [`CPU_WINDOW`].
fn cpu_used(pid: u32) -> Result<u64> {
    let before = cpu_ticks(pid)?;
    std::thread::sleep(CPU_WINDOW);
    let after = cpu_ticks(pid)?;
    Ok(after.saturating_sub(before))
}

/// A workload that spins on the CPU without syscalls: (kind, image, args).
fn busy_loops(env: &Env) -> Result<[(&'static str, &str, &'static [&'static str]); 2]> {
    Ok([
        ("wasm", env.wasm_image()?, &["/testprog.wasm", "busy"]),
        (
            "native",
            env.busybox_image()?,
            &["sh", "-c", "while :; do :; done"],
        ),
    ])
}

fn busy_loop<'e>(
    env: &'e Env,
    kind: &str,
) -> Result<(&'static str, &'e str, &'static [&'static str])> {
    busy_loops(env)?
        .into_iter()
        .find(|(k, ..)| *k == kind)
        .with_context(|| format!("no busy loop of kind {kind}"))
}

/// `ctr task pause ID`, then: PAUSED in `ctr task ls`, the freezer cgroup FROZEN and the
/// (still living) process without any CPU time over [`CPU_WINDOW`].
fn pause_and_check(env: &Env, kind: &str, id: &str, pid: u32) -> Result<()> {
    env.ctr().run(&["task", "pause", id])?.ok()?;
    wait_status(env, id, "PAUSED", STATUS_TIMEOUT)?;
    let state = freezer_state(id)?;
    ensure!(
        state == "FROZEN",
        "{kind}: freezer.state of {id} is {state:?} after pause, not FROZEN"
    );
    let used = cpu_used(pid)?;
    ensure!(
        used == 0,
        "{kind}: paused pid {pid} used {used} CPU ticks in {CPU_WINDOW:?}"
    );
    let proc = Proc::of(pid).with_context(|| format!("{kind}: paused pid {pid} is gone"))?;
    ensure!(proc.alive(), "{kind}: paused {} died", proc.describe());
    Ok(())
}

/// Busy loop in the foreground: it burns CPU; paused it burns none; resumed it burns CPU
/// again; SIGKILL then ends it with 137 and nothing is left behind.
fn pause_resume_case(env: &Env, kind: &str) -> Result<()> {
    env.require_shim()?;
    let (kind, image, args) = busy_loop(env, kind)?;
    let id = env.unique_id(&format!("pause-{kind}"));
    let _cleanup = Cleanup::new(env, &[&id]);
    let running = spawn_run_rm(env, &env.runtime(), &[], image, &id, args)?;
    let running = wait_running(env, running, &id)?;
    let pid = task_ls_pid(env, &id)?;
    let used = cpu_used(pid)?;
    ensure!(
        used > 0,
        "{kind}: busy loop pid {pid} used no CPU in {CPU_WINDOW:?} before the pause"
    );

    pause_and_check(env, kind, &id, pid)?;

    env.ctr().run(&["task", "resume", &id])?.ok()?;
    wait_status(env, &id, "RUNNING", STATUS_TIMEOUT)?;
    let state = freezer_state(&id)?;
    ensure!(
        state == "THAWED",
        "{kind}: freezer.state of {id} is {state:?} after resume, not THAWED"
    );
    let used = cpu_used(pid)?;
    ensure!(
        used > 0,
        "{kind}: resumed pid {pid} used no CPU in {CPU_WINDOW:?}"
    );

    let (out, _) = kill_and_wait(env, running, &id, "SIGKILL")?;
    ensure!(
        out.status == Some(137),
        "{kind}: SIGKILL after resume should end the task with 137: {out}"
    );
    env.assert_no_leaks(&id)
}

fn pause_resume_wasm_busy(env: &Env) -> Result<()> {
    pause_resume_case(env, "wasm")
}

fn pause_resume_native_busy(env: &Env) -> Result<()> {
    pause_resume_case(env, "native")
}

/// SIGKILL ends a paused (frozen) container without a resume: the cgroup v1 freezer holds
/// even fatal signals, so the kill has to thaw it.
fn pause_then_sigkill_ends_container(env: &Env) -> Result<()> {
    env.require_shim()?;
    for (kind, image, args) in busy_loops(env)? {
        let id = env.unique_id(&format!("pause-kill-{kind}"));
        let _cleanup = Cleanup::new(env, &[&id]);
        let running = spawn_run_rm(env, &env.runtime(), &[], image, &id, args)?;
        let running = wait_running(env, running, &id)?;
        let pid = task_ls_pid(env, &id)?;
        pause_and_check(env, kind, &id, pid)?;
        let (out, elapsed) = kill_and_wait(env, running, &id, "SIGKILL")?;
        ensure!(
            out.status == Some(137),
            "{kind}: SIGKILL of a paused task should end it with 137: {out}"
        );
        ensure!(
            elapsed < EXIT_LIMIT,
            "{kind}: SIGKILL of a paused task took {elapsed:.2?} (limit {EXIT_LIMIT:?})"
        );
        env.assert_no_leaks(&id)?;
    }
    Ok(())
}

/// Signals other than SIGKILL leave a paused container paused (also with `--all`, which has
/// to freeze the cgroup again after signalling), and a SIGKILL after them still ends it.
fn pause_signals_then_sigkill_ends_container(env: &Env) -> Result<()> {
    env.require_shim()?;
    for (kind, image, args) in busy_loops(env)? {
        let id = env.unique_id(&format!("pause-sig-{kind}"));
        let _cleanup = Cleanup::new(env, &[&id]);
        let running = spawn_run_rm(env, &env.runtime(), &[], image, &id, args)?;
        let running = wait_running(env, running, &id)?;
        let pid = task_ls_pid(env, &id)?;
        pause_and_check(env, kind, &id, pid)?;
        env.ctr().task_kill(&id, "SIGUSR1")?.ok()?;
        env.ctr()
            .run(&["task", "kill", "--all", "--signal", "SIGUSR2", &id])?
            .ok()?;
        let state = freezer_state(&id)?;
        ensure!(
            state == "FROZEN",
            "{kind}: signals thawed a paused task: {state}"
        );
        wait_status(env, &id, "PAUSED", STATUS_TIMEOUT)?;
        let (out, elapsed) = kill_and_wait(env, running, &id, "SIGKILL")?;
        ensure!(
            out.status == Some(137) && elapsed < EXIT_LIMIT,
            "{kind}: SIGKILL after signals to a paused task: {out} after {elapsed:.2?}"
        );
        env.assert_no_leaks(&id)?;
    }
    Ok(())
}

/// A signal other than SIGKILL waits while the container is paused: the wasm guest's SIGTERM
/// handler runs once it is resumed and ends it with 143.
fn pause_sigterm_then_resume_exits_143(env: &Env) -> Result<()> {
    env.require_shim()?;
    let (kind, image, args) = busy_loop(env, "wasm")?;
    let id = env.unique_id("pause-term-wasm");
    let _cleanup = Cleanup::new(env, &[&id]);
    let running = spawn_run_rm(env, &env.runtime(), &[], image, &id, args)?;
    let mut running = wait_running(env, running, &id)?;
    let pid = task_ls_pid(env, &id)?;
    pause_and_check(env, kind, &id, pid)?;
    env.ctr().task_kill(&id, "SIGTERM")?.ok()?;
    std::thread::sleep(CPU_WINDOW);
    ensure!(
        !running.has_exited(),
        "{kind}: a paused task ended on SIGTERM before the resume"
    );
    wait_status(env, &id, "PAUSED", STATUS_TIMEOUT)?;
    let state = freezer_state(&id)?;
    ensure!(
        state == "FROZEN",
        "{kind}: freezer.state of {id} is {state:?} after SIGTERM, not FROZEN"
    );
    env.ctr().run(&["task", "resume", &id])?.ok()?;
    let out = running.wait(EXIT_TIMEOUT)?;
    ensure!(
        out.status == Some(143),
        "{kind}: SIGTERM to a paused task should end it with 143 once resumed: {out}"
    );
    env.assert_no_leaks(&id)
}

/// Fails unless `out` is a failed ctr run whose message contains `want`.
fn expect_refused(out: wasmpod_e2e::CmdOutput, want: &str, what: &str) -> Result<()> {
    if out.success() {
        bail!("{what} should fail: {out}");
    }
    ensure!(
        out.stderr.contains(want),
        "{what} should fail with a message containing {want:?}: {out}"
    );
    Ok(())
}

/// Pausing an unknown or stopped task and resuming a running one are clear errors that
/// change nothing.
fn pause_resume_refused_when_not_applicable(env: &Env) -> Result<()> {
    env.require_shim()?;
    let ctr = env.ctr();

    let unknown = env.unique_id("pause-unknown");
    expect_refused(
        ctr.run(&["task", "pause", &unknown])?,
        "not found",
        "pausing unknown task",
    )?;

    // A stopped task: the shim still has it (until `task delete`), but it cannot be paused.
    let stopped = env.unique_id("pause-stopped");
    let _cleanup_stopped = Cleanup::new(env, &[&stopped]);
    run_detached(
        env,
        &env.runtime(),
        &[],
        env.busybox_image()?,
        &stopped,
        &["true"],
    )?;
    wait_status(env, &stopped, "STOPPED", STATUS_TIMEOUT)?;
    expect_refused(
        ctr.run(&["task", "pause", &stopped])?,
        "cannot pause a STOPPED task",
        "pausing stopped task",
    )?;
    expect_refused(
        ctr.run(&["task", "resume", &stopped])?,
        "cannot resume a STOPPED task",
        "resuming stopped task",
    )?;
    wait_status(env, &stopped, "STOPPED", STATUS_TIMEOUT)?;
    ctr.task_delete(&stopped)?.ok()?;
    ctr.container_delete(&stopped)?.ok()?;
    env.assert_no_leaks(&stopped)?;

    // A running task that is not paused cannot be resumed, and stays running.
    let [_, (_, image, args)] = sleepers(env)?;
    let running = env.unique_id("resume-running");
    let _cleanup_running = Cleanup::new(env, &[&running]);
    run_detached(env, &env.runtime(), &[], image, &running, args)?;
    wait_status(env, &running, "RUNNING", STATUS_TIMEOUT)?;
    expect_refused(
        ctr.run(&["task", "resume", &running])?,
        "cannot resume a RUNNING task",
        "resuming running task",
    )?;
    wait_status(env, &running, "RUNNING", STATUS_TIMEOUT)?;
    kill_and_delete(env, &running)?;
    env.assert_no_leaks(&running)
}
