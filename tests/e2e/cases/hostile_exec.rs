//! Hostile execs into a running container: a missing program, a FIFO as the program (which
//! would hang a shim that reads it), and 200 execs fired quickly, each either run or refused
//! cleanly; afterwards the shim daemon holds no more threads or descriptors than before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use wasmpod_e2e::{cases, Case, CmdOutput, Env};

use crate::hostile_support::{
    assert_clean, ensure_failed_fast, ensure_footprint_settles, Footprint, HostRootfs,
};
use crate::support::{daemon_of, kill_and_delete, run_detached, wait_status, Cleanup};

pub fn cases() -> Vec<Case> {
    cases![
        hostile_exec_missing_program,
        hostile_exec_fifo_program,
        hostile_exec_200_rapid_execs,
    ]
}

fn exec(env: &Env, id: &str, exec_id: &str, args: &[&str]) -> Result<CmdOutput> {
    let mut all = vec!["task", "exec", "--exec-id", exec_id, id];
    all.extend_from_slice(args);
    env.ctr().run(&all)
}

/// A running wasm container on a host rootfs holding `/testprog.wasm` and `/fifo.wasm`.
fn running(env: &Env, name: &str) -> Result<(String, HostRootfs)> {
    env.require_shim()?;
    let rootfs = HostRootfs::with_testprog(env, name)?;
    rootfs.fifo("fifo.wasm")?;
    let id = env.unique_id(name);
    run_detached(
        env,
        &env.runtime(),
        &["--rootfs"],
        rootfs.path_str()?,
        &id,
        &["/testprog.wasm", "sleep", "300"],
    )?;
    wait_status(env, &id, "RUNNING", Duration::from_secs(30))?;
    Ok((id, rootfs))
}

/// The exec is refused fast naming the cause; the container keeps running.
fn refused_exec(env: &Env, name: &str, arg0: &str, needle: &str) -> Result<()> {
    let (id, _rootfs) = running(env, name)?;
    let _cleanup = Cleanup::new(env, &[&id]);
    let out = exec(env, &id, "x1", &[arg0])?;
    ensure_failed_fast(&out, needle, &[arg0])?;
    wait_status(env, &id, "RUNNING", Duration::from_secs(5))?;
    kill_and_delete(env, &id)?;
    assert_clean(env, &id)
}

fn hostile_exec_missing_program(env: &Env) -> Result<()> {
    refused_exec(env, "exec-missing", "/nope.wasm", "not found in rootfs")
}

fn hostile_exec_fifo_program(env: &Env) -> Result<()> {
    refused_exec(
        env,
        "exec-fifo",
        "/fifo.wasm",
        "/fifo.wasm: is a FIFO, not a regular file",
    )
}

const EXECS: usize = 200;
/// Execs in flight at once.
const CONCURRENCY: usize = 4;

/// 200 execs, 4 at a time: wasm ones that exit 3, missing and FIFO programs. Each ends as it
/// should; the container still runs; the shim's threads and descriptors are back where they
/// were (execs are forgotten once deleted). Memory is not compared here: wasmer's engine keeps
/// the code of every module it loaded (its `EngineInner::code_memory` only grows), so each
/// wasm exec adds the module's code to a wasmer shim (see `hostile_files` for a memory check
/// over refusals, which load nothing).
fn hostile_exec_200_rapid_execs(env: &Env) -> Result<()> {
    let (id, _rootfs) = running(env, "exec-200")?;
    let _cleanup = Cleanup::new(env, &[&id]);
    let (daemon, _) = daemon_of(env, &id)?;
    let pid = daemon.proc.pid;
    // A first round at the same concurrency, so the shim's thread pools have their working size.
    exec_batch(env, &id, 0, 3 * CONCURRENCY)?;
    let before = Footprint::of(pid)?;
    exec_batch(env, &id, 3 * CONCURRENCY, EXECS)?;
    wait_status(env, &id, "RUNNING", Duration::from_secs(5))?;
    ensure_footprint_settles(pid, &before, None, &format!("{EXECS} execs"))?;
    kill_and_delete(env, &id)?;
    assert_clean(env, &id)
}

/// Execs number `first..first + count`, [`CONCURRENCY`] at a time.
fn exec_batch(env: &Env, id: &str, first: usize, count: usize) -> Result<()> {
    let next = AtomicUsize::new(first);
    let end = first + count;
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= end {
                            return Ok(());
                        }
                        one_exec(env, id, n)?;
                    }
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(result) => result?,
                Err(_) => bail!("an exec worker panicked"),
            }
        }
        Ok(())
    })
}

/// Exec number `n`: a wasm program exiting 3, a missing program or a FIFO, in turn.
fn one_exec(env: &Env, id: &str, n: usize) -> Result<()> {
    let exec_id = format!("r{n}");
    let (out, what) = match n % 3 {
        0 => (
            exec(env, id, &exec_id, &["/testprog.wasm", "exit", "3"])?,
            "exit 3",
        ),
        1 => (exec(env, id, &exec_id, &["/nope.wasm"])?, "missing"),
        _ => (exec(env, id, &exec_id, &["/fifo.wasm"])?, "fifo"),
    };
    let ok = match what {
        "exit 3" => out.status == Some(3),
        "missing" => out.status != Some(0) && out.stderr.contains("not found in rootfs"),
        _ => out.status != Some(0) && out.stderr.contains("is a FIFO"),
    };
    ensure!(ok && !out.timed_out, "exec {n} ({what}): {out}");
    Ok(())
}
