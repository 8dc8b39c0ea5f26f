//! The proxy fixture (`tests/fixtures/wasm/http.component.wasm`) told apart from a command and
//! served in-process on a loopback port, with raw HTTP/1.1 from a std `TcpStream`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmpod_runtime::GuestContext;
use wasmtime::component::Component;
use wasmtime::Engine;

use super::config::ServeConfig;
use super::instance::Proxy;
use super::Server;
use crate::component::{self, Kind};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/wasm")
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run tests/fixtures/build.sh)", path.display()))
}

fn guest(memory_limit: Option<u64>) -> GuestContext {
    GuestContext {
        args: vec!["/http.component.wasm".into()],
        env: vec![
            "GREETING=hi".into(),
            "WASMTIME_HTTP_PROXY_SOCKET_ADDR=127.0.0.1:0".into(),
        ],
        cwd: "/".into(),
        func: None,
        memory_limit: memory_limit.map(wasmpod_runtime::MemoryLimit::fixed),
        grants: Default::default(),
    }
}

/// Sends one request on a new connection and returns (status, body).
fn request(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn proxy_is_detected_and_command_is_not() {
    let engine = Engine::default();
    let proxy = Component::new(&engine, fixture("http.component.wasm")).unwrap();
    let command = Component::new(&engine, fixture("hello.component.wasm")).unwrap();
    assert_eq!(component::kind(&engine, &proxy).unwrap(), Kind::Proxy);
    assert_eq!(component::kind(&engine, &command).unwrap(), Kind::Command);
    component::check_entry(&engine, &proxy, None).unwrap();
    let err = component::check_entry(&engine, &proxy, Some("handle"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`#func` applies to core modules"), "{err}");
}

#[test]
fn serves_one_instance_per_request_and_survives_traps() {
    let engine = Engine::default();
    let component = Component::new(&engine, fixture("http.component.wasm")).unwrap();
    let context = guest(Some(16 << 20));
    let config = ServeConfig::from_env(&context.env).unwrap();
    let context = GuestContext {
        env: config.guest_env.clone(),
        ..context
    };
    let proxy = Arc::new(Proxy::new(&engine, &component, context).unwrap());
    let server = Server::bind(&config).unwrap();
    let addr = server.local_addr;
    let stop = CancellationToken::new();
    let serving = {
        let stop = stop.clone();
        std::thread::spawn(move || server.run(proxy, stop))
    };

    for _ in 0..2 {
        let (status, body) = request(addr, "GET", "/", "");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("instance-requests=1\n"), "{body}");
    }
    assert_eq!(
        request(addr, "GET", "/env?name=GREETING", ""),
        (200, "hi\n".into())
    );
    // The server's own variables are not the guest's.
    let (status, _) = request(addr, "GET", "/env?name=WASMTIME_HTTP_PROXY_SOCKET_ADDR", "");
    assert_eq!(status, 404);
    assert_eq!(request(addr, "POST", "/echo", "ping"), (200, "ping".into()));
    assert_eq!(request(addr, "GET", "/trap", "").0, 500);
    // Past the 16 MiB cap: this request fails, the next instance starts afresh.
    assert_eq!(request(addr, "GET", "/grow?mib=32", "").0, 500);
    assert_eq!(request(addr, "GET", "/grow?mib=4", "").0, 200);
    assert_eq!(request(addr, "GET", "/", "").0, 200);

    // A stop while a request sleeps: that request still completes, then the server ends.
    let slow = std::thread::spawn(move || request(addr, "GET", "/slow?ms=500", ""));
    std::thread::sleep(Duration::from_millis(200));
    let stopped_at = Instant::now();
    stop.cancel();
    assert_eq!(slow.join().unwrap(), (200, "slept 500 ms\n".into()));
    assert!(serving.join().unwrap(), "the in-flight request was cut off");
    assert!(stopped_at.elapsed() < Duration::from_secs(5));
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after stop"
    );
}

/// A one-connection-at-a-time HTTP server on loopback answering every request with `body`;
/// returns its address and the number of connections it accepted so far.
fn upstream(body: &'static str) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 203 Non-Authoritative\r\nContent-Length: {}\r\nConnection: close\
                 \r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, accepted)
}

/// Serves the proxy fixture with the outgoing-HTTP grant of `annotation` (none: all hosts).
fn serve_with_grant(annotation: Option<&str>) -> (SocketAddr, CancellationToken) {
    let engine = Engine::default();
    let component = Component::new(&engine, fixture("http.component.wasm")).unwrap();
    let mut context = guest(None);
    if let Some(value) = annotation {
        context.grants = wasmpod_runtime::grants::Grants::from_annotations([(
            "wasmpod.io/outbound-http",
            value,
        )])
        .unwrap();
    }
    let config = ServeConfig::from_env(&context.env).unwrap();
    let context = GuestContext {
        env: config.guest_env.clone(),
        ..context
    };
    let proxy = Arc::new(Proxy::new(&engine, &component, context).unwrap());
    let server = Server::bind(&config).unwrap();
    let addr = server.local_addr;
    let stop = CancellationToken::new();
    let token = stop.clone();
    std::thread::spawn(move || server.run(proxy, token));
    (addr, stop)
}

#[test]
fn outgoing_requests_follow_the_grant() {
    let (upstream_addr, accepted) = upstream("from upstream\n");
    let url = format!("http://{upstream_addr}/some/path");
    let fetch = format!("/fetch?url={url}");

    let (addr, stop) = serve_with_grant(None);
    assert_eq!(
        request(addr, "GET", &fetch, ""),
        (200, "status=203\nfrom upstream\n".into())
    );
    stop.cancel();

    let (addr, stop) = serve_with_grant(Some(&format!("http://{upstream_addr}")));
    assert_eq!(request(addr, "GET", &fetch, "").0, 200);
    // Another port of the same host is not granted.
    let (status, body) = request(addr, "GET", "/fetch?url=http://127.0.0.1:1/", "");
    assert_eq!((status, body.as_str()), (502, "error=HttpRequestDenied\n"));
    // Nothing listens on port 1 of an allowed host: a connection error, not a denial.
    stop.cancel();
    let (addr, stop) = serve_with_grant(Some("http://127.0.0.1:*"));
    let (status, body) = request(addr, "GET", "/fetch?url=http://127.0.0.1:1/", "");
    assert_eq!((status, body.as_str()), (502, "error=ConnectionRefused\n"));
    stop.cancel();

    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    for grant in ["none", "https://*", "http://localhost:*"] {
        let (addr, stop) = serve_with_grant(Some(grant));
        let (status, body) = request(addr, "GET", &fetch, "");
        assert_eq!(
            (status, body.as_str()),
            (502, "error=HttpRequestDenied\n"),
            "{grant}"
        );
        stop.cancel();
    }
    // A refused request never connects.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), before);
}
