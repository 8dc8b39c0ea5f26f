//! The shim's logger: containerd's FIFO logger (the bundle's `log` FIFO, which containerd copies
//! into its own log), without the engine's per-call chatter.
//!
//! wasmtime-wasi (and wasmer-wasix) log every WASI call of a guest (`fd_write; fd=Fd(1) ...`) at info level: one
//! FIFO write per guest write would flood containerd's log and slow guests down. Records from
//! the engine crates pass only at warn and above.

use containerd_shim::logger::FifoLogger;
use log::{Level, LevelFilter, Log, Metadata, Record};

/// Targets (crate prefixes) held to [`ENGINE_LEVEL`].
const ENGINE_TARGETS: &[&str] = &[
    "wasmtime",
    "cranelift",
    "wasi_common",
    "wiggle",
    "wasmer",
    "virtual_",
];
const ENGINE_LEVEL: Level = Level::Warn;

/// `RUST_LOG` overrides the default level (`info`, or `debug` with containerd's `-debug`).
pub fn init(debug: bool) -> std::io::Result<()> {
    let logger = EngineQuiet {
        inner: FifoLogger::with_path("log")?,
    };
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(if debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    log::set_max_level(level);
    log::set_boxed_logger(Box::new(logger)).map_err(std::io::Error::other)
}

struct EngineQuiet {
    inner: FifoLogger,
}

fn passes(metadata: &Metadata) -> bool {
    let target = metadata.target();
    // The spans' `++ name` / `-- name` lines of `tracing`'s `log` feature: spans are for
    // OpenTelemetry (see `crate::otel`), the log has the events.
    if target == wasmpod_runtime::TRACE_TARGET {
        return false;
    }
    metadata.level() <= ENGINE_LEVEL || !ENGINE_TARGETS.iter().any(|t| target.starts_with(t))
}

impl Log for EngineQuiet {
    fn enabled(&self, metadata: &Metadata) -> bool {
        passes(metadata) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if passes(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(target: &str, level: Level) -> Metadata<'_> {
        Metadata::builder().target(target).level(level).build()
    }

    #[test]
    fn engine_chatter_is_dropped_but_its_warnings_pass() {
        assert!(!passes(&meta("wasmtime_wasi::preview1", Level::Info)));
        assert!(!passes(&meta("cranelift_codegen::isa", Level::Debug)));
        assert!(passes(&meta("wasmtime_wasi::preview1", Level::Warn)));
        assert!(!passes(&meta("wasmer_wasix::syscalls", Level::Info)));
        assert!(!passes(&meta("virtual_fs::host_fs", Level::Debug)));
        assert!(passes(&meta("wasmpod_runtime::executor", Level::Info)));
        assert!(passes(&meta("libcontainer::process", Level::Debug)));
        assert!(!passes(&meta(wasmpod_runtime::TRACE_TARGET, Level::Info)));
    }
}
