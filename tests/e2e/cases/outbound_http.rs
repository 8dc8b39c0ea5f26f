//! Outgoing `wasi:http` requests (`wasmpod.io/outbound-http`) through CRI: the proxy fixture's
//! `/fetch?url=` route makes one request per incoming one, to a native busybox `httpd` sidecar
//! of its pod (HTTP) and to an HTTPS server the test runs on the host, trusted through a CA
//! bundle mounted into the container. Hosts outside the grant, and every host under
//! `wasmpod.io/network: none`, are refused before any connection: the guest sees
//! `HttpRequestDenied` and the container's log names the host and the annotation. Engines
//! without a wasi:http client refuse an allow-list at Create.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wasmpod_e2e::cri::pod::{
    annotate_pod, container_config, with_annotation, with_env, with_mount,
};
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE, HELLO_TXT, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    let mut all = cases![only_on(CLIENT_ENGINES): cri_outbound_http_grants];
    all.extend(cases![only_on(NO_CLIENT_ENGINES): cri_outbound_http_refused_without_client]);
    all
}

/// Engines with a wasi:http client (`WasmEngine::OUTBOUND_HTTP`), and those without.
const CLIENT_ENGINES: &[&str] = &["wasmtime"];
const NO_CLIENT_ENGINES: &[&str] = &["wasmer", "wasmedge"];
const KEY: &str = "wasmpod.io/outbound-http";
const PROXY: &str = "/http.component.wasm";
const PROXY_PORT: u16 = 8080;
const NO_CA_PORT: u16 = 9090;
const SIDECAR_PORT: u16 = 8081;
const CA_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
const TLS_BODY: &str = "hello over tls\n";

/// Pod `grant`: the proxy `web` (with the test CA) and `noca` (without), and a busybox `httpd`
/// sidecar. Then pod `closed`, with `wasmpod.io/network: none` only.
fn cri_outbound_http_grants(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let gateway = env.containerd().network().gateway();
    let tls = TlsServer::start(&gateway)?;
    let ca_file = tls.write_ca(env)?;
    let https = format!("https://{gateway}:{}", tls.port);
    let sidecar = format!("http://127.0.0.1:{SIDECAR_PORT}");
    // `localhost` goes through the container's /etc/hosts (glibc's resolver, under the
    // guest's seccomp filter).
    let by_name = format!("http://localhost:{SIDECAR_PORT}");
    let grant = format!("{sidecar}, {by_name}, {https}");
    let mut pod = Pod::run_with(
        cri,
        "outbound",
        env.cri_handler(),
        &env.pod_logs_root(),
        |c| annotate_pod(c, KEY, &grant),
    )?;
    let port = SIDECAR_PORT.to_string();
    let side = pod.start(&container_config(
        "side",
        BUSYBOX_IMAGE,
        &["/bin/busybox", "httpd", "-f", "-p", &port, "-h", "/data"],
    ))?;
    let web = pod.start(&with_mount(
        container_config("web", WASM_IMAGE, &[PROXY]),
        &ca_file,
        CA_PATH,
        true,
    ))?;
    let noca = pod.start(&with_env(
        container_config("noca", WASM_IMAGE, &[PROXY]),
        "WASMTIME_HTTP_PROXY_SOCKET_ADDR",
        &format!("0.0.0.0:{NO_CA_PORT}"),
    ))?;
    for id in [&side, &web, &noca] {
        wait_state(cri, id, ContainerState::ContainerRunning)?;
    }
    let ip = pod.ip()?;
    wait_listening(&ip, SIDECAR_PORT, STATE_TIMEOUT)?;
    read_log(&pod.log_path("web"), "serving wasi:http")?;
    read_log(&pod.log_path("noca"), "serving wasi:http")?;
    let fetch = |port: u16, url: &str| get(&ip, port, &format!("/fetch?url={url}"));

    // Granted: the sidecar over HTTP, the host's server over HTTPS with the mounted CA.
    expect(
        fetch(PROXY_PORT, &format!("{sidecar}/hello.txt"))?,
        200,
        &format!("status=200\n{HELLO_TXT}"),
    )?;
    expect(
        fetch(PROXY_PORT, &format!("{by_name}/hello.txt"))?,
        200,
        &format!("status=200\n{HELLO_TXT}"),
    )?;
    expect(
        fetch(PROXY_PORT, &format!("{https}/"))?,
        200,
        &format!("status=200\n{TLS_BODY}"),
    )?;
    let served = tls.connections();
    // Without the CA the same host fails verification: the roots are the container's.
    expect(
        fetch(NO_CA_PORT, &format!("{https}/"))?,
        502,
        "error=TlsCertificateError\n",
    )?;
    // Not granted: another port of the gateway, and plain http to the TLS server's port.
    let other = format!("http://{gateway}:{}", tls.port);
    expect(fetch(PROXY_PORT, &other)?, 502, "error=HttpRequestDenied\n")?;
    let (_, stderr) = read_log(&pod.log_path("web"), "refused")?;
    let line = stderr
        .lines()
        .find(|l| l.contains("refused"))
        .context("no refusal line")?;
    ensure!(
        line.starts_with("wasmpod: ")
            && line.contains(&format!("{other} refused: host {gateway}"))
            && line.contains(KEY)
            && line.contains(&https),
        "the refusal line must name the host, the annotation and the grant: {line:?}"
    );
    // The no-CA request connected (one more), the refused one did not.
    ensure!(
        tls.connections() == served + 1,
        "the TLS server saw {} connections after {served}: a refused request connected",
        tls.connections()
    );
    remove_and_assert_gone(env, &mut pod, &[&side, &web, &noca])?;

    // `wasmpod.io/network: none` without an outbound-http grant: no request at all.
    let mut closed = Pod::run_with(
        cri,
        "outbound-none",
        env.cri_handler(),
        &env.pod_logs_root(),
        |c| annotate_pod(c, "wasmpod.io/network", "none"),
    )?;
    let web = closed.start(&with_mount(
        container_config("web", WASM_IMAGE, &[PROXY]),
        &ca_file,
        CA_PATH,
        true,
    ))?;
    wait_state(cri, &web, ContainerState::ContainerRunning)?;
    let ip = closed.ip()?;
    read_log(&closed.log_path("web"), "serving wasi:http")?;
    let before = tls.connections();
    expect(
        get(&ip, PROXY_PORT, &format!("/fetch?url={https}/"))?,
        502,
        "error=HttpRequestDenied\n",
    )?;
    let (_, stderr) = read_log(&closed.log_path("web"), "refused")?;
    ensure!(
        stderr.contains(&format!("refused: host {gateway}")) && stderr.contains("is none"),
        "web's stderr: {stderr}"
    );
    ensure!(tls.connections() == before, "a refused request connected");
    remove_and_assert_gone(env, &mut closed, &[&web])
}

/// An engine without a wasi:http client refuses an allow-list at Create, naming the
/// annotation; `none` is accepted.
fn cri_outbound_http_refused_without_client(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(
        cri,
        "outbound-refused",
        env.cri_handler(),
        &env.pod_logs_root(),
    )?;
    let hello = |name| container_config(name, WASM_IMAGE, &["/hello.wasm"]);
    let err = match pod.start(&with_annotation(hello("hello"), KEY, "https://example.com")) {
        Ok(id) => bail!(
            "{} accepted an outbound-http allow-list ({id})",
            env.engine().name()
        ),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains(KEY) && err.contains("has no wasi:http client"),
        "the refusal must name the annotation and the cause: {err}"
    );
    // CRI keeps a name whose Create failed reserved: another name.
    let id = pod.start(&with_annotation(hello("hello-none"), KEY, "none"))?;
    expect_exit(&wait_exited(cri, &id)?, 0, "Completed")?;
    remove_and_assert_gone(env, &mut pod, &[&id])
}

/// Checks a (status, body) pair.
fn expect(response: (u16, String), status: u16, body: &str) -> Result<()> {
    ensure!(
        response.0 == status && response.1 == body,
        "want {status} with {body:?}, got {} with {:?}",
        response.0,
        response.1
    );
    Ok(())
}

/// `GET path` on a new connection: (status, body).
fn get(ip: &str, port: u16, path: &str) -> Result<(u16, String)> {
    let addr: SocketAddr = format!("{ip}:{port}").parse()?;
    let what = format!("GET http://{addr}{path}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("{what}: connecting"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("{what}: reading"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("{what}: no header end in {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{what}: bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// An HTTPS server on the host (all addresses, an ephemeral port) with a certificate for
/// `ip` from a CA made for this run; answers every request with [`TLS_BODY`]. Stops on drop.
struct TlsServer {
    port: u16,
    ca_pem: String,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TlsServer {
    fn start(ip: &str) -> Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wasmpod e2e test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![ip.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, ip);
        let cert = params.signed_by(&key, &ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        let config = Arc::new(config);
        let listener = TcpListener::bind("0.0.0.0:0").context("binding the TLS server")?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let config = config.clone();
                std::thread::spawn(move || serve_tls(config, stream));
            }
        });
        Ok(Self {
            port,
            ca_pem: ca.pem(),
            accepted,
            stop,
        })
    }

    /// TCP connections accepted so far.
    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The CA certificate as a PEM bundle file under the daemon's base folder.
    fn write_ca(&self, env: &Env) -> Result<PathBuf> {
        let path = env
            .containerd()
            .base()
            .join(format!("outbound-ca-{}.crt", self.port));
        std::fs::write(&path, &self.ca_pem)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One connection: the handshake, the request head, one response; errors end it quietly (a
/// client that refuses the certificate is one of the cases).
fn serve_tls(config: Arc<rustls::ServerConfig>, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut reader = BufReader::new(&mut tls);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 && line != "\r\n" => continue,
            Ok(n) if n > 0 => break,
            _ => return,
        }
    }
    let _ = write!(
        tls,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TLS_BODY}",
        TLS_BODY.len()
    );
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
