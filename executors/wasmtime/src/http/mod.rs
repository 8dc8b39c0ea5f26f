//! Serving a `wasi:http/proxy` component: an HTTP/1.1 server (hyper on tokio) in the
//! container's init process, listening on `$WASMTIME_HTTP_PROXY_SOCKET_ADDR` (default
//! `0.0.0.0:8080`), with a new instance of the component for every request. SIGTERM or SIGINT
//! stops accepting, lets in-flight requests finish for up to [`DRAIN_TIMEOUT`], and exits 0.

mod config;
mod instance;
mod stop;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmpod_runtime::{EngineError, GuestContext};
use wasmtime::component::Component;
use wasmtime::Engine;
use wasmtime_wasi_http::io::TokioIo;

use config::ServeConfig;
pub use config::ADDR_ENV;
use instance::Proxy;
use stop::StopSignals;

/// How long in-flight requests may go on after a stop signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time the stop-signal thread gives the server before it ends the process itself.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Serves the component until SIGTERM or SIGINT; returns the exit code: 0 when every
/// in-flight request finished, 128 + signal when some were cut off.
pub fn serve(
    engine: &Engine,
    component: &Component,
    guest: &GuestContext,
) -> Result<i32, EngineError> {
    let config = ServeConfig::from_env(&guest.env)?;
    let guest = GuestContext {
        env: config.guest_env.clone(),
        ..guest.clone()
    };
    let module = guest.args.first().cloned().unwrap_or_default();
    let proxy = Arc::new(Proxy::new(engine, component, guest)?);
    let signals = StopSignals::block()?;
    let server = Server::bind(&config)?;
    eprintln!(
        "wasmpod: {module}: serving wasi:http on http://{} (a new instance per request; \
         set {ADDR_ENV} to change the address)",
        server.local_addr
    );
    let stop = CancellationToken::new();
    let received = Arc::new(AtomicI32::new(0));
    signals.watch(stop.clone(), DRAIN_TIMEOUT + DRAIN_GRACE, received.clone())?;
    let drained = server.run(proxy, stop);
    let signal = received.load(Ordering::SeqCst);
    if drained {
        eprintln!("wasmpod: {module}: signal {signal}: stopped, every in-flight request finished");
        Ok(0)
    } else {
        eprintln!(
            "wasmpod: {module}: signal {signal}: stopped, requests still running after \
             {DRAIN_TIMEOUT:?} were cut off"
        );
        Ok(128 + signal)
    }
}

struct Server {
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl Server {
    fn bind(config: &ServeConfig) -> Result<Self, EngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("wasi-http")
            .build()
            .map_err(|e| EngineError::Other(format!("starting the tokio runtime: {e}")))?;
        let listener = {
            let _entered = runtime.enter();
            listen(config.addr, config.backlog)
                .map_err(|e| EngineError::Other(format!("listening on {}: {e}", config.addr)))?
        };
        let local_addr = listener
            .local_addr()
            .map_err(|e| EngineError::Other(format!("listening on {}: {e}", config.addr)))?;
        Ok(Self {
            runtime,
            listener,
            local_addr,
        })
    }

    /// Accepts connections until `stop` is cancelled, then waits for open connections and
    /// guest tasks, at most [`DRAIN_TIMEOUT`]. Returns whether they all finished.
    fn run(self, proxy: Arc<Proxy>, stop: CancellationToken) -> bool {
        let Self {
            runtime, listener, ..
        } = self;
        let tracker = TaskTracker::new();
        let drained = runtime.block_on(async {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let connection =
                                serve_connection(stream, proxy.clone(), tracker.clone(), stop.clone());
                            tracker.spawn(connection);
                        }
                        Err(e) => {
                            // Out of fds or memory: retry shortly rather than spin.
                            eprintln!("wasmpod: accepting a connection: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                }
            }
            drop(listener);
            tracker.close();
            tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
                .await
                .is_ok()
        });
        // A guest stuck in a loop would make a waiting shutdown hang.
        runtime.shutdown_background();
        drained
    }
}

fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted server can bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves HTTP/1.1 on one connection; on stop, finishes the request in progress (if any) and
/// closes the connection instead of waiting for the next request.
async fn serve_connection(
    stream: TcpStream,
    proxy: Arc<Proxy>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    // Small responses go out at once instead of waiting for the peer's ACK.
    let _ = stream.set_nodelay(true);
    let service =
        hyper::service::service_fn(move |request| proxy.clone().handle(request, tracker.clone()));
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    // Clients that go away mid-request are normal; anything else is worth a line.
    if let Err(e) = result {
        if !e.is_incomplete_message() && !e.is_canceled() {
            eprintln!("wasmpod: serving a connection: {e}");
        }
    }
}
