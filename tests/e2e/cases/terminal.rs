//! Terminals (`terminal: true`): `ctr run -t` and `ctr task exec -t` driven through a pty held
//! by the test, as a user at a keyboard: a typed line comes back from a native shell, a resize of
//! the user's terminal reaches the container's (`stty size`), the exit code comes back, a shell
//! whose ctr is killed gets SIGHUP, and a wasm guest sees a terminal on fds 0, 1 and 2.

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_e2e::leaks::wait_until;
use wasmpod_e2e::pty::PtySession;
use wasmpod_e2e::{cases, Case, Env};

use crate::hostile_support::Footprint;
use crate::support::{
    daemon_of, fifo_dir, kill_and_delete, run_args, run_detached, task_ls_pid, wait_status, Cleanup,
};

pub fn cases() -> Vec<Case> {
    cases![
        terminal_run_native_shell,
        terminal_exec_native_shell,
        terminal_wasm_guest_sees_a_tty
    ]
}

const SHORT: Duration = Duration::from_secs(10);

/// `ctr ARGS...` on a fresh 24x80 terminal.
fn ctr_on_pty(env: &Env, args: &[&str]) -> Result<PtySession> {
    PtySession::spawn(env.ctr().command(args), 24, 80)
}

/// `ctr run -t --rm ... IMAGE ID ARGS` on a terminal, once its task runs.
fn run_tty(env: &Env, image: &str, id: &str, args: &[&str]) -> Result<PtySession> {
    let fifo = fifo_dir(env)?;
    let all = run_args(&fifo, "--rm", &["-t"], &env.runtime(), image, id, args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let session = ctr_on_pty(env, &all)?;
    wait_status(env, id, "RUNNING", Duration::from_secs(30))?;
    Ok(session)
}

/// The shell on `session` runs a typed command, reads a typed line, and sees the terminal's
/// size follow the user's: 24x80, then 30x100 after a resize.
fn drive_shell(session: &mut PtySession) -> Result<()> {
    // The shell's output, not the terminal's echo of the typed line.
    session.write("echo typed-$((6*7))\n")?;
    session.expect("typed-42", SHORT)?;
    session.write("read line; echo \"got[$line]\"\n")?;
    session.write("a line from the keyboard\n")?;
    session.expect("got[a line from the keyboard]", SHORT)?;
    session.write("stty size\n")?;
    session.expect("24 80", SHORT)?;
    // ctr forwards its SIGWINCH as ResizePty, asynchronously: ask until the new size shows.
    session.resize(30, 100)?;
    let mut seen = false;
    for _ in 0..20 {
        session.write("stty size\n")?;
        if session.expect("30 100", Duration::from_millis(500)).is_ok() {
            seen = true;
            break;
        }
    }
    ensure!(seen, "the resize to 30x100 never reached the container");
    Ok(())
}

/// The shim's terminal copy threads (named `tty-<container id>`).
fn copy_threads(shim: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{shim}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("tty-"))
        })
        .count()
}

fn terminal_run_native_shell(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let id = env.unique_id("tty-run");
    let _cleanup = Cleanup::new(env, &[&id]);
    let mut session = run_tty(env, image, &id, &["sh"])?;
    drive_shell(&mut session)?;
    session.write("echo last-words; exit 3\n")?;
    let (code, screen) = session.wait(SHORT)?;
    ensure!(
        screen.contains("last-words"),
        "the last output before the exit is lost: {screen:?}"
    );
    ensure!(code == Some(3), "ctr run -t exited {code:?}: {screen}");
    env.assert_no_leaks(&id)
}

fn terminal_exec_native_shell(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let id = env.unique_id("tty-exec");
    let _cleanup = Cleanup::new(env, &[&id]);
    run_detached(env, &env.runtime(), &[], image, &id, &["sleep", "300"])?;
    wait_status(env, &id, "RUNNING", Duration::from_secs(30))?;
    let mut session = ctr_on_pty(env, &["task", "exec", "-t", "--exec-id", "sh1", &id, "sh"])?;
    drive_shell(&mut session)?;
    session.write("tty; exit 4\n")?;
    let (code, screen) = session.wait(SHORT)?;
    ensure!(
        screen.contains("/dev/pts/"),
        "the exec's stdin is not its pty: {screen:?}"
    );
    ensure!(
        code == Some(4),
        "ctr task exec -t exited {code:?}: {screen}"
    );
    // The container still runs, and another terminal exec works after the first; its copy
    // thread, pty master and FIFOs are in the shim while it runs and gone once it ended.
    let (daemon, _) = daemon_of(env, &id)?;
    let pid = daemon.proc.pid;
    let fds = || Footprint::of(pid).map(|f| f.fds).unwrap_or(0);
    let before = fds();
    let mut again = ctr_on_pty(env, &["task", "exec", "-t", "--exec-id", "sh2", &id, "sh"])?;
    again.write("echo again-$((1+1))\n")?;
    again.expect("again-2", SHORT)?;
    ensure!(
        copy_threads(pid) == 1,
        "no terminal copy thread in the shim while the exec runs"
    );
    again.write("exit\n")?;
    let (code, screen) = again.wait(SHORT)?;
    ensure!(code == Some(0), "second exec exited {code:?}: {screen}");
    let settled = wait_until(Duration::from_secs(5), || {
        copy_threads(pid) == 0 && fds() == before
    });
    ensure!(
        settled,
        "the shim kept the exec's terminal: {} copy threads, {} fds (before: {before})",
        copy_threads(pid),
        fds()
    );

    // ctr goes without `exit` (killed): its stdin closes and, as with runc, the terminal
    // hangs up: the shell gets SIGHUP and ends.
    let init = task_ls_pid(env, &id)?;
    let mut gone = ctr_on_pty(env, &["task", "exec", "-t", "--exec-id", "sh3", &id, "sh"])?;
    gone.write("echo ready-$((2*3))\n")?;
    gone.expect("ready-6", SHORT)?;
    drop(gone);
    let mut pids = Vec::new();
    let alone = wait_until(SHORT, || {
        pids = env.ctr().task_pids(&id).unwrap_or_default();
        pids == [init]
    });
    ensure!(
        alone,
        "the exec's shell outlived its ctr: pids {pids:?}, init {init}"
    );
    kill_and_delete(env, &id)?;
    env.assert_no_leaks(&id)
}

fn terminal_wasm_guest_sees_a_tty(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("tty-wasm");
    let _cleanup = Cleanup::new(env, &[&id]);
    let fifo = fifo_dir(env)?;
    let all = run_args(
        &fifo,
        "--rm",
        &["-t"],
        &env.runtime(),
        image,
        &id,
        &["/testprog.wasm", "tty"],
    );
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let session = ctr_on_pty(env, &all)?;
    let (code, screen) = session.wait(Duration::from_secs(60))?;
    ensure!(
        screen.contains("tty: stdin=true stdout=true stderr=true"),
        "the wasm init does not see its terminal: {screen:?}"
    );
    ensure!(code == Some(0), "ctr run -t exited {code:?}: {screen}");
    ensure!(
        wait_until(SHORT, || env
            .ctr()
            .task_status(&id)
            .ok()
            .flatten()
            .is_none()),
        "task {id} still listed"
    );

    // A wasm exec with a terminal, in a wasm container without one.
    let sleeper = env.unique_id("tty-wasm-exec");
    let _cleanup2 = Cleanup::new(env, &[&sleeper]);
    run_detached(
        env,
        &env.runtime(),
        &[],
        image,
        &sleeper,
        &["/testprog.wasm", "sleep", "300"],
    )?;
    wait_status(env, &sleeper, "RUNNING", Duration::from_secs(30))?;
    let session = ctr_on_pty(
        env,
        &[
            "task",
            "exec",
            "-t",
            "--exec-id",
            "tty1",
            &sleeper,
            "/testprog.wasm",
            "tty",
        ],
    )?;
    let (code, screen) = session.wait(Duration::from_secs(60))?;
    ensure!(
        screen.contains("tty: stdin=true stdout=true stderr=true"),
        "the wasm exec does not see its terminal: {screen:?}"
    );
    ensure!(
        code == Some(0),
        "ctr task exec -t exited {code:?}: {screen}"
    );
    kill_and_delete(env, &sleeper)?;
    env.assert_no_leaks(&id)?;
    env.assert_no_leaks(&sleeper)
}
