//! The suite's own checks, broken on purpose: each case leaves something behind and asserts
//! that the check meant to catch it does, naming it. A check that cannot fail would pass
//! these cases' leftovers silently.

use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::container_config;
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::leaks;
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE, RUNC_RUNTIME};

use crate::cri_support::{read_log, wait_state, PodTrace};

pub fn cases() -> Vec<Case> {
    cases![
        harness_teardown_reports_a_task_left_running,
        harness_pod_trace_reports_a_kept_socket_and_process,
        harness_read_log_fails_when_the_text_never_comes,
    ]
}

/// A task no case removed makes the environment's teardown fail, naming the task.
fn harness_teardown_reports_a_task_left_running(_shared: &Env) -> Result<()> {
    let mut env = Env::start().context("starting a private containerd for this case")?;
    let id = env.unique_id("left-running");
    let image = env.busybox_image()?.to_string();
    env.ctr()
        .run_detached(RUNC_RUNTIME, &image, &id, &["sleep", "300"])?
        .ok()?;
    let err = match env.stop() {
        Ok(()) => bail!("the teardown passed with task {id} still running"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("tasks still alive at teardown") && err.contains(&format!("default/{id}")),
        "the teardown must name the task it found: {err}"
    );
    Ok(())
}

/// After RemovePodSandbox, a socket left at the path of the pod's shim and a process naming the
/// pod are both reported; once they are gone, the check passes.
fn harness_pod_trace_reports_a_kept_socket_and_process(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "trace", env.cri_handler(), &env.pod_logs_root())?;
    let sleeper = pod.start(&container_config(
        "sleeper",
        BUSYBOX_IMAGE,
        &["sleep", "300"],
    ))?;
    wait_state(cri, &sleeper, ContainerState::ContainerRunning)?;
    let trace = PodTrace::observe(env, &pod, &[&sleeper])?;
    pod.remove()?;
    trace.assert_gone(env)?;

    let socket = leaks::shim_socket_for(env.containerd().address(), "k8s.io", &pod.id);
    std::fs::write(&socket, b"")
        .with_context(|| format!("creating a stand-in socket {}", socket.display()))?;
    // `sh -c CMD NAME` runs with NAME as its $0, so the pod's id is on its command line; `read`
    // is a builtin, so sh itself waits (on a pipe that stays open until it is killed).
    let mut process = Command::new("sh")
        .args(["-c", "read line", &pod.id])
        .stdin(Stdio::piped())
        .spawn()
        .context("spawning a process naming the pod")?;
    let found = trace.assert_gone(env);
    let _ = process.kill();
    let _ = process.wait();
    let _ = std::fs::remove_file(&socket);
    let found = match found {
        Ok(()) => bail!(
            "the pod check passed with {} and sh {} left",
            socket.display(),
            process.id()
        ),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        found.contains(&format!("shim socket {}", socket.display()))
            && found.contains(&format!("process {}", process.id())),
        "the pod check must name the socket and the process: {found}"
    );
    trace.assert_gone(env)
}

/// Waiting for a log line that never comes is an error naming it, not an empty success.
fn harness_read_log_fails_when_the_text_never_comes(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "no-line", env.cri_handler(), &env.pod_logs_root())?;
    let id = pod.start(&container_config(
        "printer",
        BUSYBOX_IMAGE,
        &["sh", "-c", "echo present; sleep 300"],
    ))?;
    wait_state(cri, &id, ContainerState::ContainerRunning)?;
    read_log(&pod.log_path("printer"), "present")?;
    let missing = read_log(&pod.log_path("printer"), "absent line");
    let trace = PodTrace::observe(env, &pod, &[&id])?;
    pod.remove()?;
    trace.assert_gone(env)?;
    match missing {
        Ok(streams) => bail!("read_log found a line that was never written: {streams:?}"),
        Err(e) => {
            let e = format!("{e:#}");
            ensure!(
                e.contains("\"absent line\"") && e.contains("present"),
                "the error must name the awaited text and show the log: {e}"
            );
            Ok(())
        }
    }
}
