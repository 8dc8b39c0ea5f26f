//! Nothing is left behind: after an ordinary kill and delete, and after the shim daemon is
//! SIGKILLed under containerd's feet.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_e2e::leaks;
use wasmpod_e2e::{cases, Case, Env};

use crate::support::{
    daemon_of, kill_shim_then_delete, run_detached, sleepers, state_dir, task_ls_pid, wait_status,
    Cleanup, Proc,
};

pub fn cases() -> Vec<Case> {
    cases![
        delete_leaves_nothing,
        shim_killed_then_containerd_cleans_up,
        shim_killed_then_containerd_cleans_up_wasm,
    ]
}

// ---------------------------------------------------------------------------------------------
// Deletion
// ---------------------------------------------------------------------------------------------

fn delete_leaves_nothing(env: &Env) -> Result<()> {
    env.require_shim()?;
    for (kind, image, args) in sleepers(env)? {
        let id = env.unique_id(&format!("delete-{kind}"));
        let _cleanup = Cleanup::new(env, &[&id]);
        run_detached(env, &env.runtime(), &[], image, &id, args)?;
        let init = task_ls_pid(env, &id)?;
        let init = Proc::of(init).with_context(|| format!("{kind}: init {init} not in /proc"))?;
        let (daemon, family) = daemon_of(env, &id)?;
        let socket = leaks::shim_socket_for(env.containerd().address(), "default", &id);
        // The checks below must be able to see the running container.
        ensure!(
            state_dir(&id).is_dir()
                && socket.exists()
                && !leaks::cgroup_dirs(&id).is_empty()
                && !leaks::mounts_containing(&id).is_empty()
                && !leaks::processes_matching(&id).is_empty(),
            "{kind}: running container {id} not visible: state dir {} exists: {}, {:#?}",
            state_dir(&id).display(),
            state_dir(&id).exists(),
            leaks::leaks_for(env.containerd().address(), &id)
        );

        env.ctr().task_kill(&id, "SIGKILL")?.ok()?;
        wait_status(env, &id, "STOPPED", Duration::from_secs(10))?;
        env.ctr().task_delete(&id)?.ok()?;
        env.ctr().container_delete(&id)?.ok()?;

        env.assert_no_leaks(&id)
            .with_context(|| format!("{kind}: after kill + delete"))?;
        ensure!(
            !init.alive(),
            "{kind}: init still alive: {}",
            init.describe()
        );
        // The zygote dies of its parent-death signal once the daemon has exited: asynchronous.
        let gone = leaks::wait_until(Duration::from_secs(5), || {
            family.iter().all(|p| !p.proc.alive())
        });
        let left: Vec<String> = family
            .iter()
            .filter(|p| p.proc.alive())
            .map(|p| p.proc.describe())
            .collect();
        ensure!(
            gone,
            "{kind}: shim daemon {} or its processes still alive: {left:#?}",
            daemon.proc.pid
        );
        ensure!(
            !state_dir(&id).exists(),
            "{kind}: state dir {} still exists",
            state_dir(&id).display()
        );
        ensure!(
            !socket.exists(),
            "{kind}: shim socket {} still exists",
            socket.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A killed shim
// ---------------------------------------------------------------------------------------------

fn shim_killed_then_containerd_cleans_up(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    shim_killed_case(env, "shim-killed-native", image, &["sleep", "300"])
}

fn shim_killed_then_containerd_cleans_up_wasm(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    shim_killed_case(
        env,
        "shim-killed-wasm",
        image,
        &["/testprog.wasm", "sleep", "300"],
    )
}

/// SIGKILLs the shim daemon of a running container; see [`kill_shim_then_delete`].
fn shim_killed_case(env: &Env, name: &str, image: &str, args: &[&str]) -> Result<()> {
    let id = env.unique_id(name);
    let _cleanup = Cleanup::new(env, &[&id]);
    run_detached(env, &env.runtime(), &[], image, &id, args)?;
    kill_shim_then_delete(env, &id)
}
