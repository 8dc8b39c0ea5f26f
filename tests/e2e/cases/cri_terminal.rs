//! Terminals through CRI, as kubelet asks for them: containers with `tty: true, stdin: true`
//! (native and wasm) see a terminal and their output reaches the CRI log; `kubectl exec -it`'s
//! path, an Exec with a tty through containerd's streaming server (a websocket speaking
//! `v4.channel.k8s.io`), types into a shell, resizes its terminal and gets its exit code.

use std::time::Duration;

use anyhow::{ensure, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::container_config;
use wasmpod_e2e::cri::stream::ExecStream;
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    cases![
        cri_tty_containers_see_a_terminal,
        cri_exec_tty_through_streaming_server
    ]
}

const SHORT: Duration = Duration::from_secs(10);

fn with_tty(mut config: k8s_cri::v1::ContainerConfig) -> k8s_cri::v1::ContainerConfig {
    config.tty = true;
    config.stdin = true;
    config
}

fn cri_tty_containers_see_a_terminal(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "tty", env.cri_handler(), &env.pod_logs_root())?;
    let native = pod.start(&with_tty(container_config(
        "native",
        BUSYBOX_IMAGE,
        &[
            "sh",
            "-c",
            "tty; [ -t 0 ] && [ -t 1 ] && echo native-tty-ok",
        ],
    )))?;
    let wasm = pod.start(&with_tty(container_config(
        "wasm",
        WASM_IMAGE,
        &["/testprog.wasm", "tty"],
    )))?;
    expect_exit(&wait_exited(cri, &native)?, 0, "Completed")?;
    expect_exit(&wait_exited(cri, &wasm)?, 0, "Completed")?;
    let (stdout, _) = read_log(&pod.log_path("native"), "native-tty-ok")?;
    ensure!(
        stdout.contains("/dev/pts/"),
        "the native container's stdin is not a pty: {stdout:?}"
    );
    read_log(
        &pod.log_path("wasm"),
        "tty: stdin=true stdout=true stderr=true",
    )?;
    remove_and_assert_gone(env, &mut pod, &[&native, &wasm])
}

fn cri_exec_tty_through_streaming_server(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "exec-tty", env.cri_handler(), &env.pod_logs_root())?;
    let native = pod.start(&container_config(
        "native",
        BUSYBOX_IMAGE,
        &["sleep", "600"],
    ))?;
    wait_state(cri, &native, ContainerState::ContainerRunning)?;

    let url = cri.exec(&native, &["sh"], true, true)?;
    let mut stream = ExecStream::connect(&url)?;
    stream.resize(80, 24)?;
    stream.write("echo typed-$((6*7))\n")?;
    stream.expect("typed-42", SHORT)?;
    stream.write("stty size\n")?;
    stream.expect("24 80", SHORT)?;
    stream.resize(100, 30)?;
    stream.write("stty size\n")?;
    stream.expect("30 100", SHORT)?;
    stream.write("echo last-words; exit 5\n")?;
    let (status, rest) = stream.finish(SHORT)?;
    ensure!(
        rest.contains("last-words"),
        "the exec's last output is lost: {rest:?}"
    );
    ensure!(
        status.contains("NonZeroExitCode") && status.contains(r#""message":"5""#),
        "the exec's exit status 5 is not reported: {status:?}"
    );

    // kubectl exec -it into a wasm guest: a wasm exec with a tty.
    let wasm = pod.start(&container_config(
        "wasm",
        WASM_IMAGE,
        &["/testprog.wasm", "sleep", "600"],
    ))?;
    wait_state(cri, &wasm, ContainerState::ContainerRunning)?;
    let url = cri.exec(&wasm, &["/testprog.wasm", "tty"], true, true)?;
    let mut stream = ExecStream::connect(&url)?;
    stream.expect("tty: stdin=true stdout=true stderr=true", SHORT)?;
    let (status, _) = stream.finish(SHORT)?;
    ensure!(
        !status.contains("Failure"),
        "the wasm exec failed: {status:?}"
    );
    remove_and_assert_gone(env, &mut pod, &[&native, &wasm])
}
