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

/// The numbers of the ticker's lines, in log order.
fn ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect()
}

fn cri_pod_survives_containerd_restart(_shared: &Env) -> Result<()> {
    let mut env = Env::start().context("starting a private containerd for this case")?;
    env.require_shim()?;
    let (pod_id, uid, ids, shim, last_before_restart, trace) = {
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
        let (ticked, _) = read_log(&pod.log_path("ticker"), "tick 3")?;
        let last_before_restart = ticks(&ticked).last().copied().unwrap_or_default();
        let shim = ppid(init_pid(&env, &wasm)?)?;
        let ids = (done, wasm, httpd, ticker);
        wait_listening(&pod.ip()?, 8080, Duration::from_secs(10))?;
        let trace = PodTrace::observe(&env, &pod, &[&ids.0, &ids.1, &ids.2, &ids.3])?;
        let handle = (
            pod.id.clone(),
            pod.uid.clone(),
            ids,
            shim,
            last_before_restart,
            trace,
        );
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
    for id in [&done, &wasm, &httpd, &ticker] {
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
    // httpd was listening before the restart: the first request must be answered.
    let body = http_get(&pod.ip()?, 8080, "/hello.txt")?;
    ensure!(body == HELLO_TXT, "httpd after the restart served {body:?}");

    // The ticker wrote all along: while containerd was down its lines waited in the FIFO, and
    // once CRI reattached they reached the log. Its ticks go on past those written before the
    // restart, with none missing.
    let (now, _) = read_log(&pod.log_path("ticker"), "tick")?;
    let last_now = ticks(&now).last().copied().context("no tick in the log")?;
    ensure!(
        last_now >= last_before_restart,
        "the ticker's log went back from tick {last_before_restart} to {last_now}"
    );
    let want = format!("tick {}\n", last_now + 5);
    let (after, _) = read_log(&pod.log_path("ticker"), &want)
        .with_context(|| format!("the ticker's log stopped at tick {last_now}"))?;
    let seen = ticks(&after);
    let gap = seen.windows(2).find(|w| w[1] != w[0] + 1);
    ensure!(
        seen.first() == Some(&0) && gap.is_none(),
        "the ticker's log lost lines across the restart (first {:?}, gap {gap:?})",
        seen.first()
    );

    let mut pod = pod;
    pod.remove()?;
    trace.assert_gone(&env)?;
    drop(pod);
    env.stop_gracefully()
}
