//! Stop signals and exit codes: SIGTERM and SIGKILL of wasm and native containers, and
//! PID-1 signal semantics compared with runc.

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_e2e::{cases, Case, Env, RUNC_RUNTIME};

use crate::support::{kill_and_wait, spawn_run_rm, wait_running, Cleanup, EXIT_LIMIT};

pub fn cases() -> Vec<Case> {
    cases![
        wasm_sigterm_busy_loop_143,
        wasm_sigkill_busy_loop_137,
        native_sigterm_sleep_143,
        native_sigkill_sleep_137,
        native_pid1_ignores_sigterm_like_runc,
    ]
}

/// A foreground container to stop with a signal.
struct KillCase<'a> {
    name: &'a str,
    flags: &'a [&'a str],
    image: &'a str,
    args: &'a [&'a str],
    signal: &'a str,
    code: i32,
}

/// Runs ARGS in the foreground, waits for RUNNING, kills with `signal` and expects ctr to
/// exit with `code` within [`EXIT_LIMIT`] of the kill.
fn kill_case(env: &Env, case: KillCase) -> Result<()> {
    let KillCase {
        name,
        flags,
        image,
        args,
        signal,
        code,
    } = case;
    let runtime = &env.runtime();
    let id = env.unique_id(name);
    let _cleanup = Cleanup::new(env, &[&id]);
    let running = spawn_run_rm(env, runtime, flags, image, &id, args)?;
    let running = wait_running(env, running, &id)?;
    let (out, elapsed) = kill_and_wait(env, running, &id, signal)?;
    ensure!(
        out.status == Some(code),
        "{signal} should end {args:?} with exit code {code}: {out}"
    );
    // "Within a second": measured from just before `ctr task kill` to the foreground ctr's
    // exit, so it includes two ctr round trips; 2 s allows for those on a 2-core VM.
    ensure!(
        elapsed < EXIT_LIMIT,
        "{signal} took {elapsed:.2?} (limit {EXIT_LIMIT:?}) to end {args:?}: {out}"
    );
    env.assert_no_leaks(&id)
}

/// The shim installs a SIGTERM handler for wasm guests: SIGTERM ends even a loop that makes
/// no syscall, at once, with 128 + 15.
fn wasm_sigterm_busy_loop_143(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    kill_case(
        env,
        KillCase {
            name: "wasm-term-busy",
            flags: &[],
            image,
            args: &["/testprog.wasm", "busy"],
            signal: "SIGTERM",
            code: 143,
        },
    )
}

fn wasm_sigkill_busy_loop_137(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    kill_case(
        env,
        KillCase {
            name: "wasm-kill-busy",
            flags: &[],
            image,
            args: &["/testprog.wasm", "busy"],
            signal: "SIGKILL",
            code: 137,
        },
    )
}

/// busybox sleep has no SIGTERM handler, so as PID 1 of its own PID namespace it would
/// ignore SIGTERM (as under runc, see [`native_pid1_ignores_sigterm_like_runc`]); in the
/// host's PID namespace it is an ordinary process and SIGTERM kills it.
///
/// The host namespace is named through this test process, not `/proc/1`: on the test VM
/// PID 1's `ns` links cannot be opened even by root, so `--with-ns pid:/proc/1/ns/pid` fails
/// with EACCES under runc as well.
fn native_sigterm_sleep_143(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let host_pid_ns = format!("pid:/proc/{}/ns/pid", std::process::id());
    kill_case(
        env,
        KillCase {
            name: "native-term-sleep",
            flags: &["--with-ns", &host_pid_ns],
            image,
            args: &["sleep", "30"],
            signal: "SIGTERM",
            code: 143,
        },
    )
}

fn native_sigkill_sleep_137(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    kill_case(
        env,
        KillCase {
            name: "native-kill-sleep",
            flags: &[],
            image,
            args: &["sleep", "30"],
            signal: "SIGKILL",
            code: 137,
        },
    )
}

/// `sleep 30` as PID 1 of its own PID namespace ignores SIGTERM under runc and under wasmpod
/// alike; SIGKILL then ends both with 137.
fn native_pid1_ignores_sigterm_like_runc(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let ids = [
        (RUNC_RUNTIME, env.unique_id("pid1-runc")),
        (&env.runtime(), env.unique_id("pid1-wasmpod")),
    ];
    let _cleanup = Cleanup::new(env, &[&ids[0].1, &ids[1].1]);
    let mut running = Vec::new();
    for (runtime, id) in &ids {
        let r = spawn_run_rm(env, runtime, &[], image, id, &["sleep", "30"])?;
        running.push(wait_running(env, r, id)?);
    }
    for (runtime, id) in &ids {
        let kill = env.ctr().task_kill(id, "SIGTERM")?;
        ensure!(kill.success(), "SIGTERM to {id} ({runtime}) failed: {kill}");
    }
    std::thread::sleep(Duration::from_secs(1));
    for ((runtime, id), r) in ids.iter().zip(running.iter_mut()) {
        let status = env.ctr().task_status(id)?;
        ensure!(
            !r.has_exited() && status.as_deref() == Some("RUNNING"),
            "{runtime}: sleep as PID 1 should ignore SIGTERM, but 1 s later its ctr has \
             exited={} and the task status is {status:?}",
            r.has_exited()
        );
    }
    for ((runtime, id), r) in ids.iter().zip(running) {
        let (out, elapsed) = kill_and_wait(env, r, id, "SIGKILL")?;
        ensure!(
            out.status == Some(137),
            "{runtime}: SIGKILL should end sleep with 137 (after {elapsed:.2?}): {out}"
        );
    }
    for (_, id) in &ids {
        env.assert_no_leaks(id)?;
    }
    Ok(())
}
