//! Cases that run native (ELF) programs of the busybox image through wasmpod's runtime,
//! and one that mixes a wasm and a native container in one shim.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use wasmpod_e2e::leaks::{self, wait_until};

use wasmpod_e2e::{cases, Case, CmdOutput, Env, HELLO_TXT, RUNC_RUNTIME};

use crate::support::{self, proc_stat, run_detached, wait_status, SANDBOX_ID};

pub fn cases() -> Vec<Case> {
    cases![
        native_busybox_echo,
        native_exit_code,
        native_stdin_cat,
        native_reads_rootfs_file,
        native_and_runc_same_output,
        wasm_and_native_share_one_shim,
    ]
}

fn native_busybox_echo(env: &Env) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id("native-echo");
    let image = env.busybox_image()?;
    let out = env
        .ctr()
        .run_rm(&env.runtime(), image, &id, &["echo", "native", "hello"])?
        .ok()?;
    ensure!(out.stdout == "native hello\n", "unexpected output: {out}");
    ensure!(out.stderr.is_empty(), "unexpected stderr: {out}");
    env.assert_no_leaks(&id)
}

fn native_exit_code(env: &Env) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id("native-exit");
    let image = env.busybox_image()?;
    env.ctr()
        .run_rm(&env.runtime(), image, &id, &["sh", "-c", "exit 3"])?
        .expect_code(3)?;
    env.assert_no_leaks(&id)
}

fn native_stdin_cat(env: &Env) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id("native-stdin");
    let image = env.busybox_image()?;
    let input = "line one\nline two\n";
    let out = env
        .ctr()
        .run_rm_stdin(&env.runtime(), image, &id, &["/bin/cat"], input.as_bytes())?
        .ok()?;
    ensure!(out.stdout == input, "cat did not echo stdin: {out}");
    env.assert_no_leaks(&id)
}

fn native_reads_rootfs_file(env: &Env) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id("native-cat");
    let image = env.busybox_image()?;
    let out = env
        .ctr()
        .run_rm(&env.runtime(), image, &id, &["cat", "/data/hello.txt"])?
        .ok()?;
    ensure!(out.stdout == HELLO_TXT, "unexpected file contents: {out}");
    env.assert_no_leaks(&id)
}

/// What the container sees of itself, with nothing that depends on the container id.
const INSPECT_SCRIPT: &str = "\
echo \"args: $0 $*\"
env | sort
id
pwd
umask
ulimit -n
ls -a /
ls /dev
cat /data/hello.txt
grep -E '^(Cap|NoNewPrivs|Seccomp|SigIgn|SigBlk)' /proc/self/status
";

/// The same busybox command prints the same through runc and through our runtime.
fn native_and_runc_same_output(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let args = ["sh", "-c", INSPECT_SCRIPT, "sh", "x", "y z"];
    let runc_id = env.unique_id("same-runc");
    let runc = env
        .ctr()
        .run_rm(RUNC_RUNTIME, image, &runc_id, &args)?
        .ok()?;
    env.assert_no_leaks(&runc_id)?;

    let ours_id = env.unique_id("same-wasmpod");
    let ours = env
        .ctr()
        .run_rm(&env.runtime(), image, &ours_id, &args)?
        .ok()?;
    // Our native processes start with every signal at its default disposition; runc's leak
    // signal 32 (glibc's SIGCANCEL) as ignored from its Go ancestry. Everything else must match.
    ensure!(
        ours.stdout.contains("SigIgn:\t0000000000000000\n"),
        "a native container must start with no ignored signal: {ours}"
    );
    let runc_stdout = runc
        .stdout
        .replace("SigIgn:\t0000000080000000\n", "SigIgn:\t0000000000000000\n");
    ensure!(
        ours.stdout == runc_stdout,
        "output differs from runc:\n{}\nrunc: {runc}\nours: {ours}",
        line_diff(&runc_stdout, &ours.stdout)
    );
    ensure!(
        ours.stderr == runc.stderr,
        "stderr differs from runc:\nrunc: {runc}\nours: {ours}"
    );
    env.assert_no_leaks(&ours_id)
}

/// The lines only in `a` (`-`) and only in `b` (`+`), in order.
fn line_diff(a: &str, b: &str) -> String {
    let a_lines: Vec<&str> = a.lines().collect();
    let b_lines: Vec<&str> = b.lines().collect();
    let mut diff: Vec<String> = a_lines
        .iter()
        .filter(|l| !b_lines.contains(l))
        .map(|l| format!("  - {l}"))
        .collect();
    diff.extend(
        b_lines
            .iter()
            .filter(|l| !a_lines.contains(l))
            .map(|l| format!("  + {l}")),
    );
    diff.join("\n")
}

/// A wasm and a native container of one pod run at the same time in ONE shim daemon, and
/// that daemon exits once both are deleted.
fn wasm_and_native_share_one_shim(env: &Env) -> Result<()> {
    env.require_shim()?;
    let wasm_image = env.wasm_image()?;
    let busybox = env.busybox_image()?;
    let pod = env.unique_id("pod");
    let wasm_id = env.unique_id("pod-wasm");
    let native_id = env.unique_id("pod-native");
    let (group_socket, _) = support::group_socket(env, &pod);
    let before = shim_daemons(env);

    let annotation = format!("{SANDBOX_ID}={pod}");
    let result = run_pod(env, &annotation, wasm_image, busybox, &wasm_id, &native_id)
        .and_then(|()| check_one_shim(env, &before, &group_socket, &wasm_id, &native_id));
    let daemon = result.as_ref().ok().copied();
    let finished = result.and_then(|_| wait_both_exit_zero(env, &wasm_id, &native_id));
    // Clean up whatever happened, then report the first failure.
    let cleanup = cleanup(env, &[&wasm_id, &native_id]);
    finished?;
    cleanup?;

    ensure!(
        wait_until(Duration::from_secs(10), || !group_socket.exists()),
        "the group's shim socket {} still exists after both containers were deleted",
        group_socket.display()
    );
    if let Some(pid) = daemon {
        ensure!(
            wait_until(Duration::from_secs(10), || !Path::new(&format!(
                "/proc/{pid}"
            ))
            .exists()),
            "shim daemon {pid} still runs after both containers were deleted: {:?}",
            leaks::cmdline(pid)
        );
    }
    env.assert_no_leaks(&wasm_id)?;
    env.assert_no_leaks(&native_id)?;
    env.assert_no_leaks(&pod)
}

/// Starts both containers of the pod detached, the wasm one first.
fn run_pod(
    env: &Env,
    annotation: &str,
    wasm_image: &str,
    busybox: &str,
    wasm_id: &str,
    native_id: &str,
) -> Result<()> {
    for (image, id, args) in [
        (wasm_image, wasm_id, &["/testprog.wasm", "sleep", "2"][..]),
        (busybox, native_id, &["sleep", "2"][..]),
    ] {
        run_detached(
            env,
            &env.runtime(),
            &["--annotation", annotation],
            image,
            id,
            args,
        )?;
    }
    Ok(())
}

/// Checks that while both tasks run exactly one new shim daemon serves them: it listens on
/// the group's socket and both tasks' processes descend from it. Returns its pid.
fn check_one_shim(
    env: &Env,
    before: &[u32],
    group_socket: &Path,
    wasm_id: &str,
    native_id: &str,
) -> Result<u32> {
    let ctr = env.ctr();
    for id in [wasm_id, native_id] {
        let status = ctr.task_status(id)?;
        ensure!(
            status.as_deref() == Some("RUNNING"),
            "task {id} should still run (sleep 2) when the shim is checked, status {status:?}"
        );
    }
    let socket = group_socket.to_string_lossy();
    let new: Vec<u32> = shim_daemons(env)
        .into_iter()
        .filter(|pid| !before.contains(pid))
        .collect();
    let describe = |pids: &[u32]| -> Vec<String> {
        pids.iter()
            .map(|&p| format!("{p}: {}", leaks::cmdline(p).unwrap_or_default()))
            .collect()
    };
    // Other cases may start shims meanwhile: ours are the ones naming our ids or socket.
    let ours: Vec<u32> = new
        .iter()
        .copied()
        .filter(|&p| {
            leaks::cmdline(p).is_some_and(|c| {
                c.contains(&*socket) || has_arg(&c, wasm_id) || has_arg(&c, native_id)
            })
        })
        .collect();
    ensure!(
        ours.len() == 1,
        "expected exactly one new shim daemon for {wasm_id} and {native_id} (socket {socket}), \
         found {:#?}; all new shim daemons: {:#?}",
        describe(&ours),
        describe(&new)
    );
    let daemon = ours[0];
    ensure!(
        group_socket.exists() && leaks::shim_sockets().contains(&group_socket.to_path_buf()),
        "the group socket {socket} does not exist"
    );
    let cmd = leaks::cmdline(daemon).unwrap_or_default();
    ensure!(
        cmd.contains(&*socket),
        "the shim daemon does not listen on the group socket {socket}: {cmd}"
    );
    for id in [wasm_id, native_id] {
        let pids = ctr.task_pids(id)?;
        ensure!(!pids.is_empty(), "task {id} lists no processes");
        for pid in pids {
            let chain = ancestors(pid);
            ensure!(
                chain.contains(&daemon),
                "process {pid} of task {id} does not descend from shim daemon {daemon}; \
                 ancestors {chain:?}"
            );
        }
    }
    Ok(daemon)
}

/// True when `arg` is one whole argument of the space-joined command line `cmd`.
fn has_arg(cmd: &str, arg: &str) -> bool {
    cmd.split(' ').any(|a| a == arg)
}

/// Waits for both tasks to stop, then deletes them; `ctr task delete` exits with the task's
/// exit code when it is not 0.
fn wait_both_exit_zero(env: &Env, wasm_id: &str, native_id: &str) -> Result<()> {
    let ctr = env.ctr();
    for id in [wasm_id, native_id] {
        wait_status(env, id, "STOPPED", Duration::from_secs(20))?;
    }
    for id in [wasm_id, native_id] {
        let out = ctr.task_delete(id)?;
        ensure!(
            out.success(),
            "task {id} did not exit with 0 (ctr task delete exits with the task's code): {out}"
        );
    }
    Ok(())
}

/// Kills and deletes whatever is left of the tasks and containers `ids`.
fn cleanup(env: &Env, ids: &[&str]) -> Result<()> {
    let ctr = env.ctr();
    let mut errors = Vec::new();
    for &id in ids {
        if ctr.task_status(id)?.is_some() {
            let _ = ctr.task_kill(id, "SIGKILL");
            let deleted = wait_until(Duration::from_secs(10), || {
                ctr.task_delete(id).is_ok_and(|out| out.success())
                    || ctr.task_status(id).is_ok_and(|s| s.is_none())
            });
            if !deleted {
                errors.push(format!("task {id} could not be deleted"));
            }
        }
        let out: CmdOutput = ctr.container_delete(id)?;
        if !out.success() {
            errors.push(format!("{out}"));
        }
    }
    if !errors.is_empty() {
        bail!("cleanup failed:\n{}", errors.join("\n"));
    }
    Ok(())
}

/// Shim daemons on the host: processes of our shim binary with a `-socket` argument whose
/// parent is not one (the daemon forks a zygote and container processes that keep its
/// command line).
fn shim_daemons(env: &Env) -> Vec<u32> {
    let candidates: Vec<u32> = leaks::processes_matching(&env.shim_binary())
        .into_iter()
        .filter(|&p| leaks::cmdline(p).is_some_and(|c| c.contains("-socket")))
        .collect();
    candidates
        .iter()
        .copied()
        .filter(|&p| parent(p).is_none_or(|pp| !candidates.contains(&pp)))
        .collect()
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent(pid: u32) -> Option<u32> {
    proc_stat(pid).map(|(_, ppid, _)| ppid)
}

/// `pid`'s ancestors, nearest first, up to pid 1.
fn ancestors(pid: u32) -> Vec<u32> {
    let mut chain = Vec::new();
    let mut current = pid;
    while let Some(pp) = parent(current) {
        if pp == 0 || chain.contains(&pp) {
            break;
        }
        chain.push(pp);
        current = pp;
    }
    chain
}
