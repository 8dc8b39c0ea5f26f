//! Cases that use containerd's own runc shim: they prove the harness itself works.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_e2e::leaks::{self, wait_until};
use wasmpod_e2e::{cases, Case, Env, RUNC_RUNTIME};

pub fn cases() -> Vec<Case> {
    cases![
        runc_busybox_echo,
        runc_exit_code,
        runc_stdin_echo,
        leak_checks_after_runc_delete,
    ]
}

fn runc_busybox_echo(env: &Env) -> Result<()> {
    let id = env.unique_id("echo");
    let image = env.busybox_image()?;
    let out = env
        .ctr()
        .run_rm(RUNC_RUNTIME, image, &id, &["echo", "hello"])?
        .ok()?;
    ensure!(out.stdout == "hello\n", "unexpected output: {out}");
    env.assert_no_leaks(&id)
}

fn runc_exit_code(env: &Env) -> Result<()> {
    let id = env.unique_id("exit-code");
    let image = env.busybox_image()?;
    env.ctr()
        .run_rm(RUNC_RUNTIME, image, &id, &["sh", "-c", "exit 3"])?
        .expect_code(3)?;
    env.assert_no_leaks(&id)
}

fn runc_stdin_echo(env: &Env) -> Result<()> {
    let id = env.unique_id("stdin");
    let image = env.busybox_image()?;
    let out = env
        .ctr()
        .run_rm_stdin(RUNC_RUNTIME, image, &id, &["/bin/cat"], b"hi\n")?
        .ok()?;
    ensure!(out.stdout == "hi\n", "cat did not echo stdin: {out}");
    env.assert_no_leaks(&id)
}

/// Runs a detached sleep, checks that every leak check sees it (so the checks can find
/// something), then kills and deletes it and checks that all of them come back empty.
fn leak_checks_after_runc_delete(env: &Env) -> Result<()> {
    let id = env.unique_id("leaks");
    let image = env.busybox_image()?;
    let ctr = env.ctr();
    ctr.run_detached(RUNC_RUNTIME, image, &id, &["sleep", "300"])?
        .ok()?;

    let pids = ctr.task_pids(&id)?;
    ensure!(
        pids.len() == 1,
        "expected one process in the task, got {pids:?}"
    );
    let socket = leaks::shim_socket_for(env.containerd().address(), "default", &id);
    let found = leaks::leaks_for(env.containerd().address(), &id);
    ensure!(
        !leaks::processes_matching(&id).is_empty()
            && !leaks::cgroup_dirs(&id).is_empty()
            && !leaks::mounts_containing(&id).is_empty()
            && socket.exists()
            && leaks::shim_sockets().contains(&socket)
            && !leaks::pids_of_exe("containerd-shim-runc-v2").is_empty(),
        "the leak checks do not see the running container {id}: {found:#?}"
    );

    ctr.task_kill(&id, "SIGKILL")?.ok()?;
    let deleted = wait_until(Duration::from_secs(10), || {
        ctr.task_delete(&id).is_ok_and(|out| out.success())
    });
    ensure!(deleted, "task {id} could not be deleted after SIGKILL");
    ctr.container_delete(&id)?.ok()?;

    ensure!(
        wait_until(Duration::from_secs(10), || !leaks::shim_sockets()
            .contains(&socket)),
        "shim socket {} still exists",
        socket.display()
    );
    env.assert_no_leaks(&id)
        .context("after kill + delete of a runc container")
}
