//! libwasmedge's log. By default the library prints it on the process's stderr: in the
//! container's init that is the container's stderr, and the log is the only place where
//! libwasmedge says why a module failed to load or trapped, or that the page limit refused a
//! memory (see `memory`). So every call into the library that matters runs inside [`capture`],
//! which collects the messages of the calling thread; the adapter puts them into its errors.
//! Messages outside a capture go to `tracing`.

use std::cell::RefCell;
use std::fmt::Display;
use std::sync::Once;

use wasmedge_sys::ffi;

use crate::memory;

/// The most messages one capture keeps: a guest can make libwasmedge log in a loop.
const MAX_LINES: usize = 32;

/// What libwasmedge logged during one [`capture`].
#[derive(Debug, Default)]
pub struct Log {
    pub lines: Vec<String>,
    /// Messages beyond [`MAX_LINES`].
    pub dropped: usize,
    /// Whether a message said that the page limit refused a memory.
    pub limit_refused: bool,
}

impl Log {
    fn record(&mut self, message: String) {
        self.limit_refused |= memory::is_limit_refusal(&message);
        if self.lines.len() < MAX_LINES {
            self.lines.push(message);
        } else {
            self.dropped += 1;
        }
    }

    /// For a call that succeeded all the same (e.g. a load that fell back to the interpreter
    /// because the AOT section was unusable): the messages go to the shim's log.
    pub fn forward(&self) {
        for line in &self.lines {
            tracing::warn!(target: "wasmedge", "{line}");
        }
    }

    /// `error`, then what libwasmedge logged about it.
    pub fn describe(&self, error: &dyn Display) -> String {
        let mut text = error.to_string();
        for line in &self.lines {
            text.push('\n');
            text.push_str(line);
        }
        if self.dropped > 0 {
            text.push_str(&format!("\n({} more log messages)", self.dropped));
        }
        text
    }
}

thread_local! {
    static CAPTURE: RefCell<Option<Log>> = const { RefCell::new(None) };
}

/// Routes libwasmedge's log (warnings and errors) through [`on_message`]; once per process.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: setters of libwasmedge's global logger. The callback is a plain function that
        // lives as long as the process. The level is set after the callback, which replaces the
        // logger the level would otherwise apply to.
        unsafe {
            ffi::WasmEdge_LogSetCallback(Some(on_message));
            ffi::WasmEdge_LogSetLevel(ffi::WasmEdge_LogLevel_Warn);
        }
    });
}

/// Runs `f`, collecting what libwasmedge logs on this thread meanwhile.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Log) {
    let outer = CAPTURE.with(|c| c.replace(Some(Log::default())));
    let result = f();
    let log = CAPTURE.with(|c| c.replace(outer)).unwrap_or_default();
    (result, log)
}

/// Called by libwasmedge on the thread that logs; must not panic (it would abort).
unsafe extern "C" fn on_message(message: *const ffi::WasmEdge_LogMessage) {
    // SAFETY: libwasmedge passes a message that is valid for the duration of the call.
    let Some(message) = (unsafe { message.as_ref() }) else {
        return;
    };
    let text = if message.Message.Buf.is_null() {
        String::new()
    } else {
        // SAFETY: a WasmEdge string is `Length` bytes at `Buf`, valid as long as the message.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                message.Message.Buf.cast::<u8>(),
                message.Message.Length as usize,
            )
        };
        String::from_utf8_lossy(bytes).into_owned()
    };
    let mut text = Some(text);
    let _ = CAPTURE.try_with(|c| {
        if let Ok(mut capture) = c.try_borrow_mut() {
            if let (Some(log), Some(text)) = (capture.as_mut(), text.take()) {
                log.record(text);
            }
        }
    });
    if let Some(text) = text {
        if message.Level >= ffi::WasmEdge_LogLevel_Error {
            tracing::warn!(target: "wasmedge", "{text}");
        } else {
            tracing::debug!(target: "wasmedge", "{text}");
        }
    }
}
