//! Outgoing `wasi:http` requests (`wasi:http/outgoing-handler`), for proxy and command
//! components: the engine's own HTTP/1.1 client (hyper, rustls on ring), run in the
//! container's init process under the guest's seccomp filter.
//!
//! Every request is checked against `wasmpod.io/outbound-http` before anything is resolved or
//! connected: a refused one fails with `HttpRequestDenied`, which the guest sees as an HTTP
//! error, and leaves one line on the container's stderr naming the host and the annotation.
//! Allowed ones get bounded time ([`Timeouts`]) and share a bound on concurrent requests per
//! container ([`MAX_CONCURRENT`]). HTTPS trusts the webpki roots and the container's CA bundle
//! (see [`roots`]), read once when the guest starts.

mod roots;
mod send;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmpod_runtime::grants::{OutboundHttp, OUTBOUND_HTTP};
use wasmpod_runtime::GuestContext;
use wasmtime::component::Component;
use wasmtime::Engine;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// Most outgoing requests of one container in flight at once (from the request's start to
/// the end of its response body); more wait for a free slot up to their connect timeout, then
/// fail with `ConnectionLimitReached`.
pub const MAX_CONCURRENT: usize = 64;
/// The interface a component imports to send requests (any 0.2.x version).
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2";

/// Time limits of one outgoing request. A guest's `request-options` may set each one, up to
/// [`Timeouts::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Name lookup, TCP connect, TLS and HTTP handshakes, together.
    pub connect: Duration,
    /// From the request's start to the response head.
    pub first_byte: Duration,
    /// Between two chunks of the response body.
    pub between_bytes: Duration,
}

impl Timeouts {
    /// What a request gets when the guest sets no option.
    pub const DEFAULT: Self = Self {
        connect: Duration::from_secs(10),
        first_byte: Duration::from_secs(60),
        between_bytes: Duration::from_secs(60),
    };
    /// The most a guest may ask for.
    pub const MAX: Self = Self {
        connect: Duration::from_secs(60),
        first_byte: Duration::from_secs(600),
        between_bytes: Duration::from_secs(600),
    };

    /// The defaults, with the guest's options (capped at [`Timeouts::MAX`]) where it set some.
    pub fn with_options(options: Option<&RequestOptions>) -> Self {
        let pick = |asked: Option<Duration>, default: Duration, max: Duration| {
            asked.unwrap_or(default).min(max)
        };
        let (d, m) = (Self::DEFAULT, Self::MAX);
        Self {
            connect: pick(
                options.and_then(|o| o.connect_timeout),
                d.connect,
                m.connect,
            ),
            first_byte: pick(
                options.and_then(|o| o.first_byte_timeout),
                d.first_byte,
                m.first_byte,
            ),
            between_bytes: pick(
                options.and_then(|o| o.between_bytes_timeout),
                d.between_bytes,
                m.between_bytes,
            ),
        }
    }
}

/// What every request of one container shares: the grant, the TLS configuration and the
/// concurrency bound. Built once per guest, before it runs.
pub struct Outgoing {
    grant: OutboundHttp,
    /// `None` when the grant allows no request: no CA bundle is read for nothing.
    tls: Option<Arc<rustls::ClientConfig>>,
    slots: Arc<Semaphore>,
    /// The module path, for stderr lines.
    module: String,
}

impl Outgoing {
    /// Reads the container's CA bundle and builds the client's TLS configuration, unless no
    /// request can be made (the grant is `none`, or `component` does not import
    /// `wasi:http/outgoing-handler`). Problems with the bundle are reported on stderr, not
    /// fatal: HTTPS then trusts the webpki roots only.
    pub fn new(engine: &Engine, component: &Component, guest: &GuestContext) -> Arc<Self> {
        let module = guest.args.first().cloned().unwrap_or_default();
        let grant = guest.grants.outbound_http.clone();
        let sends = component
            .component_type()
            .imports(engine)
            .any(|(name, _)| name.starts_with(OUTGOING_HANDLER));
        let tls = (sends && grant != OutboundHttp::None).then(|| {
            let (config, problem) = roots::client_config(&guest.env);
            if let Some(problem) = problem {
                eprintln!("wasmpod: {module}: outgoing HTTPS: {problem}");
            }
            Arc::new(config)
        });
        Arc::new(Self {
            grant,
            tls,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            module,
        })
    }

    /// The `wasi:http` hooks of one store (one proxy request, or one command).
    pub fn hooks(self: &Arc<Self>) -> Hooks {
        Hooks(self.clone())
    }

    /// Whether the grant allows `scheme://host:port`; writes the refusal line when not.
    fn check(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.grant.allows(scheme, host, port) {
            return true;
        }
        let why = match &self.grant {
            OutboundHttp::None => format!(
                "{OUTBOUND_HTTP} is none (or wasmpod.io/network is none and \
                 {OUTBOUND_HTTP} is not set)"
            ),
            OutboundHttp::Only(patterns) => {
                let list: Vec<String> = patterns.iter().map(ToString::to_string).collect();
                format!("{OUTBOUND_HTTP} allows only {}", list.join(", "))
            }
            OutboundHttp::All => String::new(),
        };
        eprintln!(
            "wasmpod: {}: outgoing request to {scheme}://{}:{port} refused: host {host} is not \
             granted ({why})",
            self.module,
            send::bracketed(host)
        );
        false
    }
}

/// [`WasiHttpHooks`] of one store: sends through the container's [`Outgoing`].
pub struct Hooks(Arc<Outgoing>);

type SendResult = wasmtime_wasi_http::Result<(
    hyper::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let outgoing = self.0.clone();
        let target = match send::Target::of(request.uri()) {
            Ok(target) => target,
            Err(e) => return Box::new(async move { Err(e) }),
        };
        // Checked here, synchronously in the guest's call: nothing is resolved or connected
        // for a refused host.
        if !outgoing.check(target.scheme(), &target.host, target.port) {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let timeouts = Timeouts::with_options(options.as_ref());
        Box::new(async move {
            send::send(&outgoing, &target, request, timeouts)
                .await
                .map_err(|failure| {
                    eprintln!(
                        "wasmpod: {}: outgoing request to {target} failed: {}",
                        outgoing.module, failure.detail
                    );
                    failure.code
                })
        })
    }
}
