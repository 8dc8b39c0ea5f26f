//! The OTLP exporter on a runtime of its own, bounded, and logging its failures once.
//!
//! The SDK's batch processor (one thread, a bounded queue that drops when full) calls
//! `OnRuntime::export`; tonic and hyper need a tokio reactor, so the export runs on a
//! one-worker runtime (`otel-export`) that exists only while export is on. Each export is
//! bounded by `EXPORT_TIMEOUT`: an unreachable collector never holds up a container, whose
//! spans only ever go into the queue. One attempt per batch (no retries): a shim lives as long
//! as its pod and ends with a flush that containerd waits for, spans are best effort.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry_otlp::{
    Protocol as Otlp, RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tokio::runtime::{Handle, Runtime};

use super::Protocol;

/// The longest one export (with the exporter's own retries) may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// The name of the exporter's threads (`/proc/<pid>/task/*/comm`).
pub const THREAD_NAME: &str = "otel-export";

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

fn runtime() -> anyhow::Result<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .thread_name(THREAD_NAME)
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `f` on the exporter's runtime, off the caller's thread.
pub fn in_background(f: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    let rt = RUNTIME
        .get()
        .ok_or_else(|| anyhow::anyhow!("no exporter runtime"))?;
    drop(rt.spawn_blocking(f));
    Ok(())
}

/// The exporter for `protocol`, its endpoint and options from the standard variables.
pub fn exporter(protocol: Protocol) -> anyhow::Result<impl SpanExporter> {
    let rt = runtime()?;
    // tonic's channel spawns its worker where it is built.
    let _entered = rt.enter();
    let inner = match protocol {
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Otlp::HttpBinary)
            .with_retry_policy(RetryPolicy::disabled())
            .build()?,
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_retry_policy(RetryPolicy::disabled())
            .build()?,
    };
    Ok(OnRuntime {
        inner,
        rt: rt.handle().clone(),
        failing: AtomicBool::new(false),
    })
}

/// An exporter whose exports run on the exporter's runtime, with a time limit.
#[derive(Debug)]
pub struct OnRuntime<E> {
    inner: E,
    rt: Handle,
    /// The last export failed: the next failure is not logged again.
    failing: AtomicBool,
}

impl<E: SpanExporter> OnRuntime<E> {
    fn note(&self, result: &OTelSdkResult, spans: usize) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("OpenTelemetry export works again");
                }
            }
            Err(e) => {
                if self.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(error = %e, spans, "OpenTelemetry export still failing, spans dropped");
                } else {
                    tracing::warn!(
                        error = %e,
                        spans,
                        "OpenTelemetry export failed, spans dropped (further failures are logged at debug level until it works again)"
                    );
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let spans = batch.len();
        let result = self.rt.block_on(async {
            match tokio::time::timeout(EXPORT_TIMEOUT, self.inner.export(batch)).await {
                Ok(result) => result,
                Err(_) => Err(OTelSdkError::Timeout(EXPORT_TIMEOUT)),
            }
        });
        self.note(&result, spans);
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.rt.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.rt.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
