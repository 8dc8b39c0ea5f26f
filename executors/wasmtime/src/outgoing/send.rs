//! Sending one granted request: a slot of the container's bound, name lookup, TCP, TLS for
//! `https`, an HTTP/1.1 connection of its own, and a response body with a between-bytes
//! timeout.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::http::uri::Scheme;
use hyper::{Request, Response, Uri};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant, Sleep};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

use super::{Outgoing, Timeouts};

/// Where a request goes: its scheme, host (IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// From the absolute URI wasmtime builds for an outgoing request.
    pub fn of(uri: &Uri) -> Result<Self, Error> {
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err(Error::HttpProtocolError),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or(Error::HttpRequestUriInvalid)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self {
            tls,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}:{}",
            self.scheme(),
            bracketed(&self.host),
            self.port
        )
    }
}

/// An IPv6 host in brackets, as in a URL; other hosts as they are.
pub fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Why a request failed: the code the guest gets and the detail for the container's stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: Error,
    pub detail: String,
}

impl Failure {
    fn new(code: Error, detail: impl fmt::Display) -> Self {
        Self {
            detail: detail.to_string(),
            code,
        }
    }
}

type Io = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// Sends `request` to `target` on a connection of its own.
pub async fn send(
    outgoing: &Outgoing,
    target: &Target,
    mut request: Request<WasiBody>,
    timeouts: Timeouts,
) -> Result<(Response<WasiBody>, Io), Failure> {
    let deadline = Instant::now() + timeouts.connect;
    let slot = timeout_at(deadline, outgoing.slots.clone().acquire_owned())
        .await
        .map_err(|_| {
            Failure::new(
                Error::ConnectionLimitReached,
                format!(
                    "{} requests already in flight for {:?}",
                    super::MAX_CONCURRENT,
                    timeouts.connect
                ),
            )
        })?
        .map_err(|e| Failure::new(Error::InternalError(None), e))?;
    let stream = timeout_at(deadline, connect(outgoing, target, deadline))
        .await
        .map_err(|_| {
            Failure::new(
                Error::ConnectionTimeout,
                format!("not connected within {:?}", timeouts.connect),
            )
        })??;
    let (mut sender, connection) = timeout_at(
        deadline,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Failure::new(Error::ConnectionTimeout, "HTTP handshake timed out"))?
    .map_err(|e| Failure::new(Error::from(e), "HTTP handshake"))?;
    // The connection is driven by a task of its own, which holds the slot until the
    // connection ends (the response body is read or dropped).
    let driver = tokio::spawn(async move {
        let result = connection.await;
        drop(slot);
        result
    });

    // The request line carries the path only: scheme and authority are for proxies.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = path
        .parse()
        .map_err(|e| Failure::new(Error::HttpRequestUriInvalid, e))?;
    let response = match timeout(timeouts.first_byte, sender.send_request(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            driver.abort();
            let detail = e.to_string();
            return Err(Failure::new(Error::from(e), detail));
        }
        Err(_) => {
            driver.abort();
            return Err(Failure::new(
                Error::HttpResponseTimeout,
                format!("no response within {:?}", timeouts.first_byte),
            ));
        }
    };
    let response = response.map(|incoming| TimedBody::new(incoming, timeouts.between_bytes));
    let io: Io = Box::new(async move {
        match driver.await {
            Ok(result) => result.map_err(Error::from),
            // Aborted with the request: nothing more to report.
            Err(_) => Ok(()),
        }
    });
    Ok((response.map(BodyExt::boxed_unsync), io))
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Name lookup, TCP connect (each address in turn), then TLS for `https`; a lookup still
/// going at `deadline` is a `DnsTimeout`.
async fn connect(
    outgoing: &Outgoing,
    target: &Target,
    deadline: Instant,
) -> Result<Box<dyn Stream>, Failure> {
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let addrs: Vec<_> = timeout_at(deadline, lookup)
        .await
        .map_err(|_| Failure::new(Error::DnsTimeout, format!("looking up {}", target.host)))?
        .map_err(|e| {
            let code = Error::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            };
            Failure::new(code, format!("looking up {}: {e}", target.host))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Failure::new(
            Error::DestinationNotFound,
            format!("{} has no address", target.host),
        ));
    }
    let tcp = TcpStream::connect(addrs.as_slice())
        .await
        .map_err(connect_failure)?;
    // Small requests go out at once instead of waiting for the peer's ACK.
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok(Box::new(tcp));
    }
    let config = outgoing.tls.clone().ok_or_else(|| {
        Failure::new(
            Error::InternalError(None),
            "no TLS configuration for a granted request",
        )
    })?;
    let name = ServerName::try_from(target.host.clone()).map_err(|e| {
        Failure::new(
            Error::HttpRequestUriInvalid,
            format!("{}: {e}", target.host),
        )
    })?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(tls_failure)?;
    Ok(Box::new(tls))
}

fn connect_failure(e: io::Error) -> Failure {
    use io::ErrorKind::*;
    let code = match e.kind() {
        ConnectionRefused => Error::ConnectionRefused,
        ConnectionReset | ConnectionAborted => Error::ConnectionTerminated,
        HostUnreachable | NetworkUnreachable => Error::DestinationUnavailable,
        TimedOut => Error::ConnectionTimeout,
        _ => Error::InternalError(Some(format!("connect: {e}"))),
    };
    Failure::new(code, format!("connect: {e}"))
}

fn tls_failure(e: io::Error) -> Failure {
    let code = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_)) => Error::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => Error::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => Error::TlsProtocolError,
    };
    Failure::new(code, format!("TLS: {e}"))
}

/// A response body that fails with `ConnectionReadTimeout` when the guest waits `between` for
/// a chunk (time the guest spends elsewhere does not count).
struct TimedBody {
    incoming: Incoming,
    between: Duration,
    timer: Pin<Box<Sleep>>,
    /// The last poll was pending: the timer runs since the wait began.
    waiting: bool,
}

impl TimedBody {
    fn new(incoming: Incoming, between: Duration) -> Self {
        Self {
            incoming,
            between,
            timer: Box::pin(tokio::time::sleep(between)),
            waiting: false,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.incoming).poll_frame(cx);
        if polled.is_ready() {
            this.waiting = false;
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if !this.waiting => {
                this.waiting = true;
                let deadline = Instant::now() + this.between;
                this.timer.as_mut().reset(deadline);
                // Registers the timer's waker.
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.incoming.size_hint()
    }
}
