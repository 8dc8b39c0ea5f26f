//! The compile process: the shim binary executed again with [`COMPILE_ARG`]. It confines itself
//! (`sandbox.rs`), reads the module from stdin (a sealed memfd), compiles it with the
//! engine and writes the artifact to stdout (a temp file of the cache, opened by the shim).
//! Errors go to stderr as one line; the exit code says which kind.

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::engine::{EngineError, WasmEngine};

/// `argv[1]` of a compile process.
pub const COMPILE_ARG: &str = "--wasmpod-compile";
/// The `cgroup.procs` files to join, `:`-separated.
pub const PROCS_ENV: &str = "WASMPOD_COMPILE_PROCS";
/// The entry the container asks for (`module.wasm#func`), when not the default.
pub const ENTRY_ENV: &str = "WASMPOD_COMPILE_ENTRY";

/// The module is not valid wasm (or uses what the engine refuses): the user's error.
pub const EXIT_INVALID: i32 = 65;
/// Anything else: the node's error.
pub const EXIT_FAILED: i32 = 70;

/// Runs the compile process; never returns.
pub fn main<E: WasmEngine>() -> ! {
    let procs: Vec<PathBuf> = std::env::var(PROCS_ENV)
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    if let Err(e) = super::sandbox::enter(&procs) {
        exit(EXIT_FAILED, &format!("confining the compile process: {e}"));
    }
    let mut source = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut source) {
        exit(EXIT_FAILED, &format!("reading the module: {e}"));
    }
    let engine = E::new().unwrap_or_else(|e| exit(EXIT_FAILED, &e.to_string()));
    let entry = std::env::var(ENTRY_ENV).ok();
    if let Err(e) = engine.check_before_compile(&source, entry.as_deref()) {
        exit(EXIT_INVALID, &e.to_string());
    }
    let artifact = match engine.precompile(&source) {
        Ok(artifact) => artifact,
        Err(e @ (EngineError::Compile(_) | EngineError::ComponentUnsupported { .. })) => {
            exit(EXIT_INVALID, &e.to_string())
        }
        Err(e) => exit(EXIT_FAILED, &e.to_string()),
    };
    drop(source);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(&artifact).and_then(|()| out.flush()) {
        exit(EXIT_FAILED, &format!("writing the artifact: {e}"));
    }
    // For the shim's log: what sizing WASMPOD_COMPILE_MEMORY needs to know.
    let peak = peak_rss_kib().map_or(String::new(), |kib| format!("{PEAK_PREFIX}{kib}"));
    exit(0, &peak)
}

/// The line a successful compile process ends its stderr with.
pub const PEAK_PREFIX: &str = "peak_rss_kib=";

/// `VmHWM` of this process, in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn exit(code: i32, message: &str) -> ! {
    if !message.is_empty() {
        let _ = writeln!(std::io::stderr(), "{message}");
    }
    // Skip destructors and atexit handlers of the engine's threads: the work is done.
    // SAFETY: _exit ends the process at once.
    unsafe { libc::_exit(code) }
}
