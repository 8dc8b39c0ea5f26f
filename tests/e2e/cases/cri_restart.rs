//! containerd restarts while pods run: the shim keeps its containers and answers the new
//! containerd, which lists every task in its right state and can stop and remove them.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::container_config;
use wasmpod_e2e::cri::{CriClient, Pod};
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE, HELLO_TXT, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    cases![cri_pod_survives_containerd_restart]
}

/// On its own containerd (restarting the shared one would disturb other cases): a pod with a
/// running wasm container, a native server, a native container writing to stdout all along, and
/// an exited wasm one. containerd is killed
/// with SIGKILL and started again. The same shim process still serves the pod; CRI lists each
/// container in its state; exec and the pod's server work; stop and remove leave nothing.
/// Writes `tick N` ten times a second.
const TICKER: &str = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done";

fn next_tick(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|n| n + 1)
}

fn cri_pod_survives_containerd_restart(_shared: &Env) -> Result<()> {
    let mut env = Env::start().context("starting a private containerd for this case")?;
    env.require_shim()?;
    let (pod_id, uid, ids, shim) = {
        let cri = env.cri()?;
        let pod = Pod::run(cri, "restart", env.cri_handler(), &env.pod_logs_root())?;
        let done = pod.start(&container_config(
            "done",
            WASM_IMAGE,
            &["/testprog.wasm", "exit", "0"],
        ))?;
        let wasm = pod.start(&container_config(
            "wasm",
            WASM_IMAGE,
            &["/testprog.wasm", "sleep", "600"],
        ))?;
        let httpd = pod.start(&container_config(
            "httpd",
            BUSYBOX_IMAGE,
            &["/bin/httpd", "-f", "-p", "8080", "-h", "/data"],
        ))?;
        let ticker = pod.start(&container_config(
            "ticker",
            BUSYBOX_IMAGE,
            &["sh", "-c", TICKER],
        ))?;
        expect_exit(&wait_exited(cri, &done)?, 0, "Completed")?;
        wait_state(cri, &wasm, ContainerState::ContainerRunning)?;
        wait_state(cri, &httpd, ContainerState::ContainerRunning)?;
        wait_state(cri, &ticker, ContainerState::ContainerRunning)?;
        read_log(&pod.log_path("ticker"), "tick 3")?;
        let shim = ppid(init_pid(&env, &wasm)?)?;
        let ids = (done, wasm, httpd, ticker);
        let handle = (pod.id.clone(), pod.uid.clone(), ids, shim);
        // The pod outlives this client: removal happens after the restart.
        pod.keep();
        handle
    };
    let (done, wasm, httpd, ticker) = ids;

    env.containerd_mut().restart_after_crash()?;
    let restarted = std::time::Instant::now();
    let cri = CriClient::connect(env.containerd().address())?;
    cri.wait_ready(Duration::from_secs(30))?;
    eprintln!(
        "cri_pod_survives_containerd_restart: CRI ready {:?} after the restart",
        restarted.elapsed()
    );
    let pod = Pod::adopt(&cri, &pod_id, &uid, &env.pod_logs_root());

    let listed: Vec<String> = cri.list_containers()?.into_iter().map(|c| c.id).collect();
    for id in [&done, &wasm, &httpd] {
        ensure!(
            listed.contains(id),
            "container {id} not listed after the restart: {listed:?}"
        );
    }
    expect_exit(&cri.container_status(&done)?, 0, "Completed")?;
    for id in [&wasm, &httpd, &ticker] {
        let status = cri.container_status(id)?;
        ensure!(
            status.state == ContainerState::ContainerRunning as i32,
            "container {id} is {:?} after the restart",
            status.state
        );
        ensure!(
            ppid(init_pid(&env, id)?)? == shim,
            "container {id} is no longer served by shim {shim}"
        );
    }
    let exec = cri.exec_sync(&httpd, &["cat", "/data/hello.txt"], 10)?;
    ensure!(
        exec.exit_code == 0 && exec.stdout == HELLO_TXT.as_bytes(),
        "exec after the restart: {exec:?}"
    );
    let body = http_get(&pod.ip()?, 8080, "/hello.txt", Duration::from_secs(10))?;
    ensure!(body == HELLO_TXT, "httpd after the restart served {body:?}");

    // The ticker wrote while containerd was down and goes on writing: its log grows again once
    // CRI has reattached to its FIFOs.
    let (before, _) = read_log(&pod.log_path("ticker"), "")?;
    let last = before.lines().last().unwrap_or_default().to_string();
    let next = next_tick(&last).with_context(|| format!("no tick in {last:?}"))?;
    read_log(&pod.log_path("ticker"), &format!("tick {}", next + 5)).and_then(|(after, _)| {
        ensure!(
            after.contains(&format!("tick {}\n", next + 5)),
            "ticker log stopped at {last:?}"
        );
        Ok(())
    })?;

    let mut pod = pod;
    pod.remove()?;
    assert_pod_gone(&env, &pod, &[&done, &wasm, &httpd, &ticker])?;
    drop(pod);
    env.stop_gracefully()
}
