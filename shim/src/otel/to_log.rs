//! Events to the `log` logger, as `tracing`'s `log` feature writes them when no subscriber is
//! set: same target, level, location and text (`message key=value ...`), so containerd's log
//! reads the same whether trace export is on or off.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::Layer;

/// The layer, filtered to the events the `log` logger takes.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let max = match log::max_level() {
        log::LevelFilter::Off => LevelFilter::OFF,
        log::LevelFilter::Error => LevelFilter::ERROR,
        log::LevelFilter::Warn => LevelFilter::WARN,
        log::LevelFilter::Info => LevelFilter::INFO,
        log::LevelFilter::Debug => LevelFilter::DEBUG,
        log::LevelFilter::Trace => LevelFilter::TRACE,
    };
    let filter: Box<dyn Filter<S> + Send + Sync> =
        Box::new(filter_fn(|m: &Metadata<'_>| m.is_event() && logged(m)).with_max_level_hint(max));
    ToLog.with_filter(filter)
}

fn log_level(level: &Level) -> log::Level {
    match *level {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    }
}

fn log_metadata<'a>(meta: &'a Metadata<'_>) -> log::Metadata<'a> {
    log::Metadata::builder()
        .level(log_level(meta.level()))
        .target(meta.target())
        .build()
}

/// What `tracing`'s `log` feature checks before it writes a record.
fn logged(meta: &Metadata<'_>) -> bool {
    log_level(meta.level()) <= log::max_level() && log::logger().enabled(&log_metadata(meta))
}

struct ToLog;

impl<S: Subscriber> Layer<S> for ToLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !logged(meta) {
            return;
        }
        log::logger().log(
            &log::Record::builder()
                .metadata(log_metadata(meta))
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .args(format_args!("{}", Fields(event)))
                .build(),
        );
    }
}

/// An event's fields as `tracing`'s `log` feature formats them.
struct Fields<'a, 'b>(&'a Event<'b>);

impl fmt::Display for Fields<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut visitor = Writer {
            f,
            first: true,
            result: Ok(()),
        };
        self.0.record(&mut visitor);
        visitor.result
    }
}

struct Writer<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    first: bool,
    result: fmt::Result,
}

impl Visit for Writer<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let result = if std::mem::take(&mut self.first) {
            if field.name() == "message" {
                write!(self.f, "{value:?}")
            } else {
                write!(self.f, "{}={value:?}", field.name())
            }
        } else {
            write!(self.f, " {}={value:?}", field.name())
        };
        self.result = self.result.and(result);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects the text of the events it sees, formatted like [`ToLog`] does.
    struct Collect(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Collect {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let text = Fields(event).to_string();
            self.0.lock().unwrap().push(text);
        }
    }

    #[test]
    fn fields_are_formatted_like_tracing_log() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Collect(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let id = "c1";
            tracing::info!(id = %id, pid = 42, wasm = true, name = "x", "container created");
            tracing::warn!(error = ?"boom", "create failed");
            tracing::info!(code = 3);
        });
        let lines = lines.lock().unwrap();
        assert_eq!(
            *lines,
            [
                "container created id=c1 pid=42 wasm=true name=\"x\"",
                "create failed error=\"boom\"",
                "code=3",
            ]
        );
    }
}
