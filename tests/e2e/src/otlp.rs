//! A small OTLP trace receiver (a stand-in for an OpenTelemetry collector): `http/protobuf`
//! (`POST /v1/traces`) or `grpc` (the TraceService), on a local port, keeping every span it is
//! sent for the case to inspect.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// The OTLP transports of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`.
    HttpProtobuf,
    /// `grpc`.
    Grpc,
}

impl Protocol {
    /// The value of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

/// One span as received.
#[derive(Debug, Clone)]
pub struct Span {
    /// Hex.
    pub trace_id: String,
    /// Hex.
    pub span_id: String,
    /// Hex, empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// Attribute values as text.
    pub attributes: BTreeMap<String, String>,
    /// The status message when the span's status is an error.
    pub error: Option<String>,
    /// The `service.name` of the span's resource.
    pub service_name: Option<String>,
}

impl Span {
    /// The attribute `key`, or "".
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

#[derive(Default)]
struct Store {
    spans: Mutex<Vec<Span>>,
    requests: AtomicUsize,
}

impl Store {
    fn add(&self, request: ExportTraceServiceRequest) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        for resource_spans in request.resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attrs(&r.attributes).remove("service.name"));
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let error = span
                        .status
                        .as_ref()
                        .filter(|s| s.code == 2)
                        .map(|s| s.message.clone());
                    spans.push(Span {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        attributes: attrs(&span.attributes),
                        error,
                        service_name: service_name.clone(),
                    });
                }
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
    grpc_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// A receiver on a free local port.
    pub fn start(protocol: Protocol) -> Result<Self> {
        Self::start_on(protocol, "127.0.0.1:0".parse()?)
    }

    /// A receiver on `addr` (e.g. the default OTLP ports 4317 and 4318).
    pub fn start_on(protocol: Protocol, addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store::default());
        let stop = Arc::new(AtomicBool::new(false));
        let grpc_stop = match protocol {
            Protocol::HttpProtobuf => {
                let (store, stop) = (store.clone(), stop.clone());
                std::thread::spawn(move || serve_http(listener, &store, &stop));
                None
            }
            Protocol::Grpc => Some(serve_grpc(listener, store.clone())?),
        };
        Ok(Receiver {
            addr,
            store,
            stop,
            grpc_stop,
        })
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.store
            .spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many export requests arrived.
    pub fn requests(&self) -> usize {
        self.store.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(stop) = self.grpc_stop.take() {
            let _ = stop.send(());
        } else {
            // Wakes the accept loop up.
            let _ = TcpStream::connect(self.addr);
        }
    }
}

fn serve_http(listener: TcpListener, store: &Arc<Store>, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let store = store.clone();
        std::thread::spawn(move || {
            let _ = http_connection(conn, &store);
        });
    }
}

/// Serves the HTTP/1.1 requests of one connection (keep-alive) until the peer closes it.
fn http_connection(conn: TcpStream, store: &Store) -> std::io::Result<()> {
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
        }
        let body = if chunked {
            read_chunked(&mut reader)?
        } else {
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            body
        };
        let status = if !request_line.starts_with("POST /v1/traces ") {
            "404 Not Found"
        } else {
            match ExportTraceServiceRequest::decode(body.as_slice()) {
                Ok(request) => {
                    store.add(request);
                    "200 OK"
                }
                Err(_) => "400 Bad Request",
            }
        };
        let reply = ExportTraceServiceResponse::default().encode_to_vec();
        write!(
            writer,
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        )?;
        writer.write_all(&reply)?;
        writer.flush()?;
    }
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(std::io::Error::other)?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk)?;
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

struct Collector(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves the TraceService on a thread of its own; the sender stops it.
fn serve_grpc(
    listener: TcpListener,
    store: Arc<Store>,
) -> Result<tokio::sync::oneshot::Sender<()>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Collector(store)))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
    });
    Ok(tx)
}
