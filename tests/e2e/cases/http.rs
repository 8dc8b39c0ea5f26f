//! `wasi:http/proxy` components served through CRI: the host reaches them at the pod IP, every
//! request gets a new instance, a trap or the memory cap fails only its own request, the
//! address comes from `WASMTIME_HTTP_PROXY_SOCKET_ADDR`, and StopContainer drains in-flight
//! requests and ends with 0. Engines without component support refuse the component at Create.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::{container_config, with_env, with_memory_limit};
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, Case, Env, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    let mut all = cases![cri_http_proxy_serves_requests];
    all.extend(cases![only_on(COMPONENT_ENGINES): cri_http_proxy_graceful_stop]);
    all
}

/// Engines whose shim serves components (see `WasmEngine::SUPPORTS_COMPONENTS`).
const COMPONENT_ENGINES: &[&str] = &["wasmtime"];
const PROXY: &str = "/http.component.wasm";
const ADDR_ENV: &str = "WASMTIME_HTTP_PROXY_SOCKET_ADDR";
const DEFAULT_PORT: u16 = 8080;
const OTHER_PORT: u16 = 9090;
const MIB: i64 = 1 << 20;

fn supported(env: &Env) -> bool {
    COMPONENT_ENGINES.contains(&env.engine().name())
}

/// One pod: `web` on the default address (64 MiB limit), `alt` on a configured one, `bad`
/// with a malformed address. GET and POST from the host, one instance per request (also on a
/// keep-alive connection), env, traps and the memory cap failing only their own request.
fn cri_http_proxy_serves_requests(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "http", env.cri_handler(), &env.pod_logs_root())?;
    let web_config = with_memory_limit(
        with_env(
            container_config("web", WASM_IMAGE, &[PROXY]),
            "COLOR",
            "blue",
        ),
        64 * MIB,
    );
    if !supported(env) {
        let err = match pod.start(&web_config) {
            Ok(id) => bail!(
                "{} started a wasi:http component ({id}); it must refuse it with the cause",
                env.engine().name()
            ),
            Err(e) => format!("{e:#}"),
        };
        ensure!(
            err.contains("runs core modules only"),
            "the refusal must name the cause: {err}"
        );
        return remove_and_assert_gone(env, &mut pod, &[]);
    }
    let web = pod.start(&web_config)?;
    let alt = pod.start(&with_env(
        container_config("alt", WASM_IMAGE, &[PROXY]),
        ADDR_ENV,
        &format!("0.0.0.0:{OTHER_PORT}"),
    ))?;
    let bad = pod.start(&with_env(
        container_config("bad", WASM_IMAGE, &[PROXY]),
        ADDR_ENV,
        "port-8080",
    ))?;
    wait_state(cri, &web, ContainerState::ContainerRunning)?;
    wait_state(cri, &alt, ContainerState::ContainerRunning)?;
    let ip = pod.ip()?;
    let web_addr: SocketAddr = format!("{ip}:{DEFAULT_PORT}").parse()?;
    let alt_addr: SocketAddr = format!("{ip}:{OTHER_PORT}").parse()?;

    // The server says when it listens; from then on every request must be answered, the
    // first one included. GET / on new connections and on one keep-alive connection: always
    // instance 1.
    read_log(&pod.log_path("web"), &serving_line(DEFAULT_PORT))?;
    read_log(&pod.log_path("alt"), &serving_line(OTHER_PORT))?;
    let hello = http_get(&ip, DEFAULT_PORT, "/")?;
    ensure!(
        hello.contains("hello from a wasi:http component") && hello.contains("instance-requests=1"),
        "GET / at {web_addr}: {hello:?}"
    );
    for _ in 0..3 {
        expect(
            request(web_addr, "GET", "/", "")?,
            200,
            "instance-requests=1\n",
        )?;
    }
    let mut connection = Connection::open(web_addr)?;
    for i in 0..3 {
        let response = connection.send("GET", "/", "")?;
        expect(response, 200, "instance-requests=1\n").with_context(|| format!("request {i}"))?;
    }
    let posted = "a body sent by the host\n".repeat(500);
    let (status, body) = connection.send("POST", "/echo", &posted)?;
    ensure!(
        status == 200 && body == posted,
        "POST /echo: {status}, {} bytes",
        body.len()
    );
    expect(
        connection.send("GET", "/env?name=COLOR", "")?,
        200,
        "blue\n",
    )?;
    expect(
        connection.send("GET", "/env?name=GREETING", "")?,
        200,
        "hi\n",
    )?;

    // A trap, and a request past the 64 MiB cap, fail alone; the server goes on.
    expect(request(web_addr, "GET", "/trap", "")?, 500, "")?;
    expect(
        request(web_addr, "GET", "/", "")?,
        200,
        "instance-requests=1\n",
    )?;
    expect(request(web_addr, "GET", "/grow?mib=100", "")?, 500, "")?;
    expect(
        request(web_addr, "GET", "/grow?mib=8", "")?,
        200,
        "grew 8 MiB\n",
    )?;
    let status = cri.container_status(&web)?;
    ensure!(
        status.state == ContainerState::ContainerRunning as i32,
        "web is no longer running after a trap: {status:?}"
    );
    let (_, stderr) = read_log(&pod.log_path("web"), "exceeded its memory limit")?;
    for want in [
        "GET /trap: wasm trap".to_string(),
        "GET /grow?mib=100: wasm guest exceeded its memory limit".to_string(),
    ] {
        ensure!(
            stderr.contains(&want),
            "{want:?} not in web's stderr: {stderr}"
        );
    }

    // The configured address; the variable is the server's, not the guest's.
    expect(
        request(alt_addr, "GET", "/", "")?,
        200,
        "instance-requests=1\n",
    )?;
    expect(
        request(alt_addr, "GET", &format!("/env?name={ADDR_ENV}"), "")?,
        404,
        "",
    )?;

    // A malformed address: a clear error and a non-zero exit.
    expect_exit(&wait_exited(cri, &bad)?, 1, "Error")?;
    let (_, stderr) = read_log(&pod.log_path("bad"), ADDR_ENV)?;
    ensure!(
        stderr.contains(&format!("invalid {ADDR_ENV}=\"port-8080\"")),
        "bad's stderr: {stderr}"
    );

    remove_and_assert_gone(env, &mut pod, &[&web, &alt, &bad])
}

/// StopContainer while `/slow?ms=2000` is in flight: the request completes, the container
/// exits 0 (not 143 or 137) well before the stop timeout, and new connections are refused.
/// Only on engines with component support: the refusal is checked by
/// `cri_http_proxy_serves_requests`.
fn cri_http_proxy_graceful_stop(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "http-stop", env.cri_handler(), &env.pod_logs_root())?;
    let web = pod.start(&container_config("web", WASM_IMAGE, &[PROXY]))?;
    wait_state(cri, &web, ContainerState::ContainerRunning)?;
    let ip = pod.ip()?;
    read_log(&pod.log_path("web"), &serving_line(DEFAULT_PORT))?;
    http_get(&ip, DEFAULT_PORT, "/")?;
    let addr: SocketAddr = format!("{ip}:{DEFAULT_PORT}").parse()?;

    // An idle keep-alive connection must not hold the stop up.
    let mut idle = Connection::open(addr)?;
    expect(idle.send("GET", "/", "")?, 200, "instance-requests=1\n")?;
    // /slow goes on a connection the server has already accepted, so the stop cannot catch
    // it in the accept queue; the server reads it well within the 500 ms before the stop.
    let mut busy = Connection::open(addr)?;
    expect(busy.send("GET", "/", "")?, 200, "instance-requests=1\n")?;
    let slow = std::thread::spawn(move || busy.send("GET", "/slow?ms=2000", ""));
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    const STOP_TIMEOUT: i64 = 30;
    cri.stop_container(&web, STOP_TIMEOUT)?;
    let stop_took = stopping.elapsed();
    let answer = slow
        .join()
        .map_err(|_| anyhow::anyhow!("the /slow request thread panicked"))?
        .context("the in-flight /slow request")?;
    expect(answer, 200, "slept 2000 ms\n")?;
    expect_exit(&wait_exited(cri, &web)?, 0, "Completed")?;
    // The drain waits for /slow only: far less than the timeout after which SIGKILL comes.
    ensure!(
        stop_took < Duration::from_secs(8),
        "StopContainer took {stop_took:?}: the server did not stop once /slow finished"
    );
    let closed = idle.reader.read(&mut [0u8; 1]);
    ensure!(
        matches!(closed, Ok(0))
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the idle keep-alive connection was not closed by the stop: {closed:?}"
    );
    ensure!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "{addr} still accepts connections after the stop"
    );
    let (_, stderr) = read_log(&pod.log_path("web"), "stopped")?;
    ensure!(
        stderr.contains("stopped, every in-flight request finished"),
        "web's stderr: {stderr}"
    );
    remove_and_assert_gone(env, &mut pod, &[&web])
}

/// What the proxy writes to stderr once it listens on `port`.
fn serving_line(port: u16) -> String {
    format!("serving wasi:http on http://0.0.0.0:{port}")
}

/// Checks a (status, body) pair; an empty `body` accepts any body.
fn expect(response: (u16, String), status: u16, body: &str) -> Result<()> {
    ensure!(
        response.0 == status && (body.is_empty() || response.1.contains(body)),
        "want {status} with {body:?}, got {} with {:?}",
        response.0,
        response.1
    );
    Ok(())
}

/// One request on a new connection.
fn request(addr: SocketAddr, method: &str, target: &str, body: &str) -> Result<(u16, String)> {
    Connection::open(addr)?.send(method, target, body)
}

/// An HTTP/1.1 keep-alive connection; responses must carry `Content-Length` (the fixture's and
/// the server's own 500s do).
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    addr: SocketAddr,
}

impl Connection {
    fn open(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            addr,
        })
    }

    fn send(&mut self, method: &str, target: &str, body: &str) -> Result<(u16, String)> {
        let what = format!("{method} http://{}{target}", self.addr);
        write!(
            self.writer,
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .with_context(|| format!("sending {what}"))?;
        self.read_response()
            .with_context(|| format!("reading the answer to {what}"))
    }

    fn read_response(&mut self) -> Result<(u16, String)> {
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line)?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.context("no Content-Length in the response")?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}
