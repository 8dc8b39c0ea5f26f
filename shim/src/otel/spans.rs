//! The spans of the task verbs: one trace per container, from its Create to its Delete.

use std::fmt::Display;

use opentelemetry::trace::Status;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{active, TRACE_TARGET};

/// What a container's spans carry after its Create: its sandbox id, its module's digest and
/// the Create span, which every later span of the container hangs under (one trace).
#[derive(Clone, Debug, Default)]
pub struct TaskTrace {
    /// `io.kubernetes.cri.sandbox-id`, or the container's id when it has none (`ctr`).
    pub sandbox_id: String,
    /// `sha256:<hex>` of the wasm module (the cache key), none for a native container.
    pub module_digest: Option<String>,
    parent: Option<opentelemetry::Context>,
}

impl TaskTrace {
    /// Only the module's digest, known at the end of Create (and in the log).
    pub fn of_module(module_digest: Option<String>) -> Self {
        TaskTrace {
            module_digest,
            ..Default::default()
        }
    }

    /// The trace of a container created under `create` (see [`task_span`]).
    pub fn new(create: &Span, sandbox_id: String, module_digest: Option<String>) -> Self {
        let parent = active().then(|| create.context());
        TaskTrace {
            sandbox_id,
            module_digest,
            parent,
        }
    }

    /// Records the sandbox id and the digest on `span` (Create learns them as it goes).
    pub fn record(&self, span: &Span) {
        span.record("sandbox.id", self.sandbox_id.as_str());
        if let Some(digest) = &self.module_digest {
            span.record("module.digest", digest.as_str());
        }
    }
}

/// The span of task verb `name` (`Create`, `Start`, ...) on container `id`: a child of the
/// container's Create span when `trace` is known. A disabled span when export is off.
pub fn task_span(
    name: &'static str,
    id: &str,
    exec_id: &str,
    engine: &str,
    trace: Option<&TaskTrace>,
) -> Span {
    if !active() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "task",
        otel.name = name,
        container.id = id,
        exec.id = Empty,
        sandbox.id = Empty,
        engine,
        module.digest = Empty,
    );
    if !exec_id.is_empty() {
        span.record("exec.id", exec_id);
    }
    if let Some(trace) = trace {
        trace.record(&span);
        if let Some(parent) = &trace.parent {
            let _ = span.set_parent(parent.clone());
        }
    }
    span
}

/// Runs `verb` in the span of task verb `name` (see [`task_span`]), which records its error;
/// `trace` (the container's, if known) is asked only when export is on.
pub fn traced<T, E: Display>(
    name: &'static str,
    id: &str,
    exec_id: &str,
    engine: &str,
    trace: impl FnOnce() -> Option<TaskTrace>,
    verb: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    if !active() {
        return verb();
    }
    let span = task_span(name, id, exec_id, engine, trace().as_ref());
    let result = span.in_scope(verb);
    if let Err(e) = &result {
        record_error(&span, e);
    }
    result
}

/// Marks `span` failed with `error` as its status message.
pub fn record_error(span: &Span, error: impl Display) {
    if !span.is_disabled() {
        span.set_status(Status::error(error.to_string()));
    }
}
