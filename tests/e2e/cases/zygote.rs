//! The zygote of a pod's shim killed under a running container, seen through containerd: the
//! container keeps running and its end still reaches `ctr` with its exit code, and the pod's
//! next container (a wasm one, which the fresh zygote must load) runs. The same through the
//! task API, with the zygote's clean environment checked, is in `task_api`.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use wasmpod_e2e::leaks::{self, wait_until};
use wasmpod_e2e::shim_api::children_of;
use wasmpod_e2e::{cases, Case, Env};

use crate::support::{
    daemon_of, kill_and_wait, spawn_run_rm, task_ls_pid, wait_running, wait_status, Cleanup,
    SANDBOX_ID,
};

pub fn cases() -> Vec<Case> {
    cases![zygote_killed_under_a_running_pod]
}

fn zygote_killed_under_a_running_pod(env: &Env) -> Result<()> {
    env.require_shim()?;
    let (native, wasm) = (env.busybox_image()?, env.wasm_image()?);
    let pod = env.unique_id("zygote-pod");
    let annotation = format!("{SANDBOX_ID}={pod}");
    let flags = ["--annotation", annotation.as_str()];
    let first = env.unique_id("zygote-first");
    let later = env.unique_id("zygote-later");
    let _cleanup = Cleanup::new(env, &[&first, &later]);

    let running = spawn_run_rm(
        env,
        &env.runtime(),
        &flags,
        native,
        &first,
        &["sleep", "300"],
    )?;
    let running = wait_running(env, running, &first)?;
    let (daemon, _) = daemon_of(env, &first)?;
    let init = task_ls_pid(env, &first)?;
    let others: Vec<u32> = children_of(daemon.proc.pid)
        .into_iter()
        .filter(|pid| *pid != init)
        .collect();
    let [zygote] = others.as_slice() else {
        bail!(
            "expected one zygote among the children of shim {} (besides init {init}): {others:?}",
            daemon.proc.pid
        );
    };
    let zygote = *zygote;
    // SAFETY: a signal to the process just identified as the pod shim's zygote.
    ensure!(
        unsafe { libc::kill(zygote as i32, libc::SIGKILL) } == 0,
        "kill {zygote}: {}",
        std::io::Error::last_os_error()
    );
    ensure!(
        wait_until(Duration::from_secs(5), || !children_of(daemon.proc.pid)
            .contains(&zygote)),
        "the killed zygote {zygote} was not reaped"
    );

    let out = env.ctr().run_rm_flags(
        &env.runtime(),
        &flags,
        wasm,
        &later,
        &["/hello.wasm", "after"],
    )?;
    ensure!(
        out.success() && out.stdout.lines().any(|l| l == "arg[1]=after"),
        "the pod's next container after its zygote was killed: {out}"
    );
    let fresh: Vec<String> = children_of(daemon.proc.pid)
        .into_iter()
        .filter_map(leaks::cmdline)
        .filter(|c| c.contains("--wasmpod-zygote"))
        .collect();
    ensure!(
        fresh.len() == 1 && fresh[0].starts_with(&format!("{} ", daemon_argv0(daemon.proc.pid))),
        "expected one fresh zygote, the shim binary in zygote mode: {fresh:?}"
    );

    wait_status(env, &first, "RUNNING", Duration::from_secs(1))?;
    let (out, _) = kill_and_wait(env, running, &first, "SIGKILL")?;
    out.expect_code(137)?;
    for id in [&first, &later] {
        env.assert_no_leaks(id)?;
    }
    Ok(())
}

/// The shim daemon's argv\[0\], which its fresh zygote shows too.
fn daemon_argv0(pid: u32) -> String {
    leaks::cmdline(pid)
        .and_then(|c| c.split(' ').next().map(str::to_string))
        .unwrap_or_default()
}
