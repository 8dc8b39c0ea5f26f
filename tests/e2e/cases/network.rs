//! `wasi:sockets` in CRI pods on the harness's CNI bridge, and `wasmpod.io/network` narrowing
//! it: a component serves TCP at the pod IP, reaches a native busybox sidecar by address and by
//! the pod's hostname, and `none`, a CIDR allow-list and `listen=` refuse what they do not
//! grant (the guest sees `PermissionDenied`, WASI's `access-denied`). Engines without sockets
//! refuse an allow-list at Create and run `none`.
//!
//! The guest is `testprog.component.wasm` (its socket modes are in `testprog/net.rs`); the
//! sidecar is `busybox nc -ll -e /bin/cat`, an echo server. Name lookup is in
//! `network_names.rs`, which uses the helpers here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::ContainerConfig;
use wasmpod_e2e::cri::pod::{annotate_pod, container_config, with_annotation};
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    let mut all = cases![net_allow_list_needs_sockets];
    all.extend(cases![only_on(SOCKET_ENGINES):
        net_component_serves_tcp_at_pod_ip,
        net_none_refuses_connect_bind_and_lookup,
        net_allow_list_admits_only_what_it_lists,
        net_container_annotation_wins_over_pod,
    ]);
    all
}

/// Engines that give components `wasi:sockets` (`WasmEngine::SOCKETS`); the socket modes of
/// testprog need a component (`WasmEngine::SUPPORTS_COMPONENTS`): wasmtime has both.
pub(crate) const SOCKET_ENGINES: &[&str] = &["wasmtime"];
pub(crate) const NETWORK: &str = "wasmpod.io/network";
const GUEST: &str = "/testprog.component.wasm";
/// How long the host waits for a port of the pod to accept connections.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);

/// A native echo server on `port` in the pod (`nc -ll` serves one connection after another).
pub(crate) fn echo_sidecar(name: &str, port: u16) -> ContainerConfig {
    let port = port.to_string();
    container_config(
        name,
        BUSYBOX_IMAGE,
        &["/bin/busybox", "nc", "-ll", "-p", &port, "-e", "/bin/cat"],
    )
}

/// Starts the echo sidecar and waits until the host reaches it at the pod IP.
pub(crate) fn start_echo_sidecar(pod: &Pod, port: u16) -> Result<String> {
    let ip = pod.ip()?;
    pod.start(&echo_sidecar(&format!("echo-{port}"), port))?;
    wait_listening(&ip, port, LISTEN_TIMEOUT)?;
    Ok(ip)
}

/// testprog as a component with `args`, optionally annotated `wasmpod.io/network: grant`.
pub(crate) fn guest(name: &str, args: &[&str], grant: Option<&str>) -> ContainerConfig {
    let mut command = vec![GUEST];
    command.extend_from_slice(args);
    let config = container_config(name, WASM_IMAGE, &command);
    match grant {
        Some(value) => with_annotation(config, NETWORK, value),
        None => config,
    }
}

/// Runs `config` in `pod` to its end: exit 0 with `expect` in its log.
pub(crate) fn run_ok(
    env: &Env,
    pod: &Pod,
    config: &ContainerConfig,
    expect: &str,
) -> Result<String> {
    let name = container_name(config);
    let id = pod.start(config)?;
    let status = wait_exited(env.cri()?, &id)?;
    let (stdout, stderr) = read_log(&pod.log_path(&name), expect)
        .with_context(|| format!("container {name} (exit {})", status.exit_code))?;
    expect_exit(&status, 0, "Completed")
        .with_context(|| format!("{name}: stdout {stdout:?} stderr {stderr:?}"))?;
    ensure!(
        stdout.contains(expect),
        "{name}: {expect:?} not on stdout: {stdout:?}"
    );
    Ok(stdout)
}

/// Runs `config` in `pod` to its end: exit 1 (WASI 0.2's failure) with `error` on stderr.
pub(crate) fn run_refused(
    env: &Env,
    pod: &Pod,
    config: &ContainerConfig,
    error: &str,
) -> Result<String> {
    let name = container_name(config);
    let id = pod.start(config)?;
    let status = wait_exited(env.cri()?, &id)?;
    let (stdout, stderr) = read_log(&pod.log_path(&name), error)
        .with_context(|| format!("container {name} (exit {})", status.exit_code))?;
    expect_exit(&status, 1, "Error")
        .with_context(|| format!("{name}: stdout {stdout:?} stderr {stderr:?}"))?;
    ensure!(
        stderr.contains(error),
        "{name}: {error:?} not on stderr: {stderr:?}"
    );
    Ok(stderr)
}

fn container_name(config: &ContainerConfig) -> String {
    config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

/// `tcp-serve`: the component listens on the pod's port, the host connects to the pod IP
/// twice and gets each line echoed; then the guest ends with 0.
fn net_component_serves_tcp_at_pod_ip(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "net-serve", env.cri_handler(), &env.pod_logs_root())?;
    const PORT: u16 = 7070;
    let server = pod.start(&guest("server", &["tcp-serve", "7070", "2"], None))?;
    read_log(&pod.log_path("server"), "tcp-serve 7070: listening")?;
    let ip = pod.ip()?;
    for line in ["first", "second"] {
        let answer = ask(&ip, PORT, line)?;
        ensure!(
            answer == format!("echo: {line}\n"),
            "the component answered {answer:?} to {line:?}"
        );
    }
    expect_exit(&wait_exited(cri, &server)?, 0, "Completed")?;
    read_log(&pod.log_path("server"), "tcp-serve 7070: answered 2")?;
    remove_and_assert_gone(env, &mut pod, &[&server])
}

/// Sends `line` to `ip:port` from the host; returns the first line of the answer.
fn ask(ip: &str, port: u16, line: &str) -> Result<String> {
    let addr = format!("{ip}:{port}").parse()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .with_context(|| format!("reading the answer from {addr}"))?;
    Ok(answer)
}

/// `none`: connect, bind and name lookup fail in the guest (`PermissionDenied` for sockets;
/// a lookup fails as wasmtime reports a disabled resolver, permanent-resolver-failure). The
/// same guest without the annotation connects.
fn net_none_refuses_connect_bind_and_lookup(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "net-none", env.cri_handler(), &env.pod_logs_root())?;
    const PORT: u16 = 7072;
    start_echo_sidecar(&pod, PORT)?;
    let connect = ["tcp-get", "127.0.0.1:7072", "hi"];
    run_refused(
        env,
        &pod,
        &guest("connect", &connect, Some("none")),
        "tcp-get 127.0.0.1:7072: error: PermissionDenied",
    )?;
    run_refused(
        env,
        &pod,
        &guest("bind", &["tcp-bind", "7073"], Some("none")),
        "tcp-bind 7073: error: PermissionDenied",
    )?;
    let stderr = run_refused(
        env,
        &pod,
        &guest("lookup", &["lookup", "localhost"], Some("none")),
        "lookup localhost: error: ",
    )?;
    ensure!(
        stderr.contains("failed to lookup address information: Non-recoverable"),
        "a refused lookup must fail as a permanent resolver failure: {stderr:?}"
    );
    run_ok(
        env,
        &pod,
        &guest("granted", &connect, None),
        "hi\ntcp-get 127.0.0.1:7072: OK\n",
    )?;
    remove_and_assert_gone(env, &mut pod, &[])
}

/// `127.0.0.0/8:7074, listen=7075`: the sidecar at 127.0.0.1 is reached, the same sidecar at
/// the pod IP is not (and the init says why on stderr); port 7075 binds, 7076 does not.
fn net_allow_list_admits_only_what_it_lists(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "net-allow", env.cri_handler(), &env.pod_logs_root())?;
    const PORT: u16 = 7074;
    let ip = start_echo_sidecar(&pod, PORT)?;
    let grant = Some("127.0.0.0/8:7074, listen=7075");
    run_ok(
        env,
        &pod,
        &guest("loopback", &["tcp-get", "127.0.0.1:7074", "hi"], grant),
        "hi\ntcp-get 127.0.0.1:7074: OK\n",
    )?;
    let pod_addr = format!("{ip}:{PORT}");
    let stderr = run_refused(
        env,
        &pod,
        &guest("pod-ip", &["tcp-get", &pod_addr, "hi"], grant),
        &format!("tcp-get {pod_addr}: error: PermissionDenied"),
    )?;
    ensure!(
        stderr.contains(&format!(
            "wasmpod: TcpConnect {pod_addr} refused: not in wasmpod.io/network"
        )),
        "the refusal must be explained on stderr: {stderr:?}"
    );
    run_ok(
        env,
        &pod,
        &guest("listen", &["tcp-bind", "7075"], grant),
        "tcp-bind 7075: OK\n",
    )?;
    run_refused(
        env,
        &pod,
        &guest("listen-other", &["tcp-bind", "7076"], grant),
        "tcp-bind 7076: error: PermissionDenied",
    )?;
    remove_and_assert_gone(env, &mut pod, &[])
}

/// The pod says `none`; a container without its own annotation gets it, one annotated
/// `127.0.0.1:7077` gets that instead (CRI writes the container's annotations last).
fn net_container_annotation_wins_over_pod(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run_with(
        cri,
        "net-override",
        env.cri_handler(),
        &env.pod_logs_root(),
        |config| annotate_pod(config, NETWORK, "none"),
    )?;
    const PORT: u16 = 7077;
    start_echo_sidecar(&pod, PORT)?;
    let connect = ["tcp-get", "127.0.0.1:7077", "hi"];
    run_refused(
        env,
        &pod,
        &guest("pod-grant", &connect, None),
        "tcp-get 127.0.0.1:7077: error: PermissionDenied",
    )?;
    run_ok(
        env,
        &pod,
        &guest("own-grant", &connect, Some("127.0.0.1:7077")),
        "hi\ntcp-get 127.0.0.1:7077: OK\n",
    )?;
    remove_and_assert_gone(env, &mut pod, &[])
}

/// An allow-list needs `wasi:sockets`: an engine without them refuses it when the container's
/// task is created (StartContainer: CRI's CreateContainer only records the container), fast
/// and naming the annotation; `none` runs there. Engines with sockets run both.
fn net_allow_list_needs_sockets(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "net-engine", env.cri_handler(), &env.pod_logs_root())?;
    let hello = |name: &str, grant: &str| {
        with_annotation(
            container_config(name, WASM_IMAGE, &["/hello.wasm"]),
            NETWORK,
            grant,
        )
    };
    run_ok(env, &pod, &hello("none", "none"), "hello from wasm")?;
    let listed = hello("listed", "10.0.0.0/8:443");
    if SOCKET_ENGINES.contains(&env.engine().name()) {
        run_ok(env, &pod, &listed, "hello from wasm")?;
        return remove_and_assert_gone(env, &mut pod, &[]);
    }
    let started = Instant::now();
    let err = match pod.start(&listed) {
        Ok(id) => bail!(
            "{} started a container granted some addresses ({id}); it has no sockets to \
             enforce them with",
            env.engine().name()
        ),
        Err(e) => format!("{e:#}"),
    };
    let took = started.elapsed();
    eprintln!("net_allow_list_needs_sockets: refused after {took:?}");
    ensure!(
        err.contains("annotation wasmpod.io/network") && err.contains("no sockets"),
        "the refusal must name the annotation and the cause: {err}"
    );
    // Refused before any module is compiled or guest started: well under a compile's time.
    ensure!(took < Duration::from_secs(5), "the refusal took {took:?}");
    remove_and_assert_gone(env, &mut pod, &[])
}
