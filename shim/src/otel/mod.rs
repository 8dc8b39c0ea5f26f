//! Opt-in OpenTelemetry trace export (OTLP), off unless the environment asks for it.
//!
//! Like runwasi: on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! is set and `OTEL_SDK_DISABLED` is not `true`; the protocol is `http/protobuf` (default) or
//! `grpc` (`OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`); `OTEL_SERVICE_NAME` and the other standard
//! variables (headers, timeout, resource attributes, sampler) are the SDK's. containerd starts
//! shims with its own environment, so these are set on containerd.
//!
//! Only the shim daemon exports, and only from `init`, which runs after the zygote is forked
//! and the signals are blocked: the zygote, the containers and the compile processes never hold
//! an exporter thread. Off, nothing of this exists: no subscriber, no thread, no span.
//!
//! On, a `tracing` subscriber carries two layers: `to_log` hands every event to the `log`
//! logger exactly as `tracing`'s `log` feature does without a subscriber (so containerd's log is
//! the same), and `tracing-opentelemetry` turns the spans of target `TRACE_TARGET` (the task
//! verbs here, detection, cache, compile and zygote in the runtime) into OpenTelemetry spans.

mod export;
mod spans;
mod to_log;

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

pub use spans::{record_error, task_span, traced, TaskTrace};
pub use wasmpod_runtime::TRACE_TARGET;

/// How long a `Shutdown` waits for the spans to go out (a slow collector is not waited for).
const FLUSH_WAIT: Duration = Duration::from_millis(500);
/// How long the daemon's exit waits for the last spans to go out.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(4);

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are exported (after a successful [`init`]).
pub fn active() -> bool {
    PROVIDER.get().is_some()
}

/// The OTLP transports wasmpod speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: POST `<endpoint>/v1/traces`.
    HttpProtobuf,
    /// `grpc`: the collector's TraceService.
    Grpc,
}

/// What the environment (read through `var`) asks for: `Ok(None)` when export is off.
pub fn wanted(var: impl Fn(&str) -> Option<String>) -> Result<Option<Protocol>, String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        && set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    let protocol =
        set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    match protocol.as_deref().map(str::trim) {
        None | Some("http/protobuf") => Ok(Some(Protocol::HttpProtobuf)),
        Some("grpc") => Ok(Some(Protocol::Grpc)),
        Some(other) => Err(format!(
            "OTLP protocol {other:?} is not supported (http/protobuf or grpc); trace export is off"
        )),
    }
}

/// Starts trace export when the environment asks for it. Call once, in the daemon, after the
/// zygote exists and the signals are blocked. A failure is logged and leaves export off.
pub fn init(engine: &'static str) {
    let protocol = match wanted(|name| std::env::var(name).ok()) {
        Ok(Some(protocol)) => protocol,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("{e}");
            return;
        }
    };
    match start(engine, protocol) {
        Ok(()) => tracing::info!(protocol = ?protocol, "OpenTelemetry trace export on"),
        Err(e) => tracing::warn!(error = %e, "OpenTelemetry trace export is off"),
    }
}

fn start(engine: &'static str, protocol: Protocol) -> anyhow::Result<()> {
    let exporter = export::exporter(protocol)?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        resource = resource.with_service_name(format!("containerd-shim-{engine}-v1"));
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("wasmpod");
    let ours = |m: &tracing::Metadata<'_>| {
        // Our spans, and the events inside them (they become span events).
        m.target() == TRACE_TARGET
            || (m.is_event()
                && m.target().starts_with("wasmpod")
                && *m.level() <= tracing::Level::INFO)
    };
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_filter(filter_fn(ours).with_max_level_hint(LevelFilter::INFO));
    let subscriber = tracing_subscriber::registry()
        .with(to_log::layer())
        .with(otel);
    tracing::subscriber::set_global_default(subscriber)?;
    let _ = PROVIDER.set(provider);
    Ok(())
}

/// Sends what is queued now, waiting at most [`FLUSH_WAIT`]; a slower export goes on in the
/// background.
pub fn flush() {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let (done, wait) = std::sync::mpsc::channel();
    let flushed = export::in_background(move || {
        let _ = done.send(provider.force_flush());
    });
    if let Err(e) = flushed {
        tracing::debug!(error = %e, "OpenTelemetry flush");
        return;
    }
    match wait.recv_timeout(FLUSH_WAIT) {
        Ok(Err(e)) => tracing::debug!(error = %e, "OpenTelemetry flush"),
        Ok(Ok(())) => {}
        Err(_) => tracing::debug!("OpenTelemetry flush still running"),
    }
}

/// Sends what is still queued (bounded by a timeout) and stops the exporter: the daemon's exit.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::debug!(error = %e, "OpenTelemetry shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(wanted(env(&[])), Ok(None));
        assert_eq!(
            wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])),
            Ok(None)
        );
        assert_eq!(
            wanted(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])),
            Ok(None)
        );
        let disabled = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ];
        assert_eq!(wanted(env(&disabled)), Ok(None));
    }

    #[test]
    fn protocol_defaults_to_http_protobuf() {
        let http = [(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://h:4318/v1/traces",
        )];
        assert_eq!(wanted(env(&http)), Ok(Some(Protocol::HttpProtobuf)));
        let grpc = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_SDK_DISABLED", "false"),
        ];
        assert_eq!(wanted(env(&grpc)), Ok(Some(Protocol::Grpc)));
        let json = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ];
        assert!(wanted(env(&json)).is_err());
    }
}
