//! One request, one instance: a new `Store` (WASI context, resource table, memory cap) per
//! request, instantiated from a `ProxyPre` linked once.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use wasmpod_runtime::{EngineError, GuestContext};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::limits::GuestLimits;
use crate::outgoing::{Hooks, Outgoing};
use crate::{other, wasi};

/// What the server needs to make an instance for each request.
pub struct Proxy {
    pre: ProxyPre<RequestState>,
    /// The container's args and preopens, and its env without the server's variables.
    guest: GuestContext,
    /// Outgoing requests of every instance: the grant, TLS roots, the concurrency bound.
    outgoing: Arc<Outgoing>,
}

struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    limits: GuestLimits,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl Proxy {
    /// Links WASI 0.2 (all of it, as `wasmtime serve` does: env, preopens, stdio) and
    /// `wasi:http`, and checks the component's imports against them; reads the container's
    /// CA bundle for outgoing HTTPS.
    pub fn new(
        engine: &Engine,
        component: &Component,
        guest: GuestContext,
    ) -> Result<Self, EngineError> {
        let mut linker: Linker<RequestState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(other("linking WASI 0.2"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(other("linking wasi:http"))?;
        let pre = linker
            .instantiate_pre(component)
            .and_then(ProxyPre::new)
            .map_err(other("preparing the proxy component"))?;
        let outgoing = Outgoing::new(engine, component, &guest);
        Ok(Self {
            pre,
            guest,
            outgoing,
        })
    }

    fn module(&self) -> &str {
        self.guest.args.first().map(String::as_str).unwrap_or("")
    }

    /// Serves one request in a new instance. Never fails: a guest that traps, or ends without
    /// a response, gives a 500 and the cause on the container's stderr.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        tracker: TaskTracker,
    ) -> Result<Response<HyperOutgoingBody>, Infallible> {
        let what = format!("{} {}", request.method(), request.uri());
        match self.start(request, &tracker, &what).await {
            Ok(response) => Ok(response),
            Err(cause) => {
                if let Some(cause) = cause {
                    eprintln!("wasmpod: {}: {what}: {cause}", self.module());
                }
                Ok(internal_error())
            }
        }
    }

    /// Starts the instance on a task of its own, so it can go on streaming the body after the
    /// response head is sent; returns that head. `Err(None)`: the task already logged why.
    async fn start(
        &self,
        request: Request<Incoming>,
        tracker: &TaskTracker,
        what: &str,
    ) -> Result<Response<HyperOutgoingBody>, Option<String>> {
        let state = RequestState {
            wasi: wasi::builder(&self.guest)
                .map_err(|e| Some(e.to_string()))?
                .build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: self.outgoing.hooks(),
            limits: GuestLimits::new(self.guest.memory_limit),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        let (sender, receiver) = oneshot::channel();
        let (incoming, out) = {
            let mut http = store.data_mut().http();
            let incoming = http.new_incoming_request(Scheme::Http, request);
            let out = http.new_response_outparam(sender);
            incoming.and_then(|i| out.map(|o| (i, o)))
        }
        .map_err(|e| Some(format!("{e:#}")))?;

        let pre = self.pre.clone();
        let memory_limit = self.guest.memory_limit;
        let label = format!("wasmpod: {}: {what}", self.module());
        let task = tracker.spawn(async move {
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, out)
                    .await
            }
            .await;
            let failure =
                result
                    .err()
                    .map(|e| match (store.data().limits.exceeded, memory_limit) {
                        (Some(requested), Some(limit)) => EngineError::MemoryLimit {
                            limit: limit.bytes(),
                            requested: requested as u64,
                        },
                        _ => EngineError::Trap(format!("{e:?}")),
                    });
            if let Some(failure) = &failure {
                eprintln!("{label}: {failure}");
            }
            failure.is_none()
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(Some(format!("the guest answered with error {code:?}"))),
            // The store, and the sender in it, is gone: the instance ended without a response.
            Err(_) => match task.await {
                Ok(true) => Err(Some("the guest returned without a response".into())),
                Ok(false) => Err(None),
                Err(e) => Err(Some(format!("the request task failed: {e}"))),
            },
        }
    }
}

fn internal_error() -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(b"internal server error\n"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
