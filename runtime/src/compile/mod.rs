//! Tenant bytes → compiled artifact, outside the shim.
//!
//! The shim never parses or compiles a tenant's module: compiling is node work, like unpacking
//! an image. Each compile runs in a short-lived process of its own (the shim binary executed
//! again, [`child`]), confined before it reads the module (the node's compile cgroup, no
//! capabilities, a seccomp filter), given the module as a sealed memfd ([`SealedModule`]) and a
//! temp file of the cache to write the artifact to. Compiles per node are limited
//! ([`CompileConfig::jobs`]), each has a wall-clock limit, and failures are reported in words.

mod cgroup;
pub mod child;
mod config;
pub mod exits;
mod sandbox;
mod slots;
mod source;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use child::COMPILE_ARG;
pub use config::CompileConfig;
pub use source::{SealedModule, SourceError};

use config::human_bytes;
use exits::Exit;

/// Most of the compile process's stderr kept for the error message.
const MAX_STDERR: u64 = 16 * 1024;

/// Why a module could not be compiled; each names the module's path inside the container.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages show
pub enum CompileError {
    /// The module is not valid wasm, or uses what the engine refuses: the engine's words.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// The compile process was OOM-killed in the node's compile cgroup.
    #[error(
        "compiling {path} needed more than the node's compile memory limit ({limit}) \
         (WASMPOD_COMPILE_MEMORY)"
    )]
    Memory { path: String, limit: String },
    /// The compile process ran past [`CompileConfig::timeout`] and was killed.
    #[error("compiling {path} timed out after {seconds} s (WASMPOD_COMPILE_TIMEOUT)")]
    Timeout { path: String, seconds: u64 },
    /// The compile process failed otherwise (its stderr, or how it ended).
    #[error("compiling {path} failed: {reason}")]
    Failed { path: String, reason: String },
    /// Starting the compile process or handing it the module.
    #[error("compiling {path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
}

/// What a compile took, for the log.
#[derive(Debug, Clone, Copy)]
pub struct CompileStats {
    /// Time waiting for a compile slot.
    pub queued: Duration,
    /// Time the compile process ran.
    pub compiled: Duration,
    /// Peak resident memory of the compile process, as it reported it.
    pub peak_rss_kib: Option<u64>,
}

/// Runs compiles for one shim under the node's limits.
#[derive(Debug, Clone)]
pub struct Compiler {
    config: CompileConfig,
    /// The node's compile slots (see [`slots`]).
    slot_dir: PathBuf,
    /// The program to execute: this shim's own binary.
    program: PathBuf,
}

impl Compiler {
    /// A compiler under `config`'s limits, taking slots in `slot_dir` ([`slot_dir`]), which
    /// executes this process's own binary as the compile process.
    pub fn new(config: CompileConfig, slot_dir: PathBuf) -> Self {
        Self {
            config,
            slot_dir,
            program: PathBuf::from("/proc/self/exe"),
        }
    }

    /// Another binary to execute as the compile process (tests: one that calls [`child::main`]).
    pub fn with_program(mut self, program: PathBuf) -> Self {
        self.program = program;
        self
    }

    /// The limits it applies.
    pub fn config(&self) -> &CompileConfig {
        &self.config
    }

    /// Compiles `module` (found at `path` in the container, to be started at `entry`, `None`
    /// for the default) into `out`, which the compile process writes from its current offset
    /// on. A module that can never start is refused before it is compiled
    /// ([`WasmEngine::check_before_compile`](crate::WasmEngine::check_before_compile)).
    pub fn compile(
        &self,
        path: &str,
        entry: Option<&str>,
        module: &SealedModule,
        out: &File,
    ) -> Result<CompileStats, CompileError> {
        let io = |what| {
            move |source| CompileError::Io {
                path: path.to_string(),
                what,
                source,
            }
        };
        let slot = slots::acquire(&self.slot_dir, self.config.jobs).map_err(io("compile slot"))?;
        let cgroup = cgroup::CompileCgroup::prepare(&self.config.cgroup, self.config.memory)
            .map_err(|e| CompileError::Failed {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        let oom_before = cgroup.oom_kills();
        let queued = slot.waited;
        tracing::info!(
            module = path,
            bytes = module.len(),
            slot = slot.index,
            queued_ms = slot.waited.as_millis() as u64,
            "compile started"
        );
        let started = Instant::now();
        let procs = cgroup
            .procs
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let mut command = Command::new(&self.program);
        command
            .arg(COMPILE_ARG)
            .env_clear()
            .env(child::PROCS_ENV, procs)
            .current_dir("/")
            .stdin(module.reader().map_err(io("module"))?)
            .stdout(out.try_clone().map_err(io("artifact file"))?)
            .stderr(Stdio::piped());
        if let Some(entry) = entry {
            command.env(child::ENTRY_ENV, entry);
        }
        let mut child = exits::spawn(&mut command).map_err(io("starting the compile process"))?;
        let stderr = child.stderr.take().map(read_bounded);
        let deadline = started + self.config.timeout;
        let exit = match wait_logging_progress(&mut child, deadline, path, module.len()) {
            Some(exit) => exit,
            None => {
                let _ = child.kill();
                let _ = exits::wait(&mut child, Instant::now() + Duration::from_secs(10));
                exits::exits_forget(child.id() as i32);
                return Err(CompileError::Timeout {
                    path: path.to_string(),
                    seconds: self.config.timeout.as_secs_f64().ceil() as u64,
                });
            }
        };
        let message = stderr
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        let compiled = started.elapsed();
        tracing::info!(
            module = path,
            ms = compiled.as_millis() as u64,
            ?exit,
            "compile finished"
        );
        drop(slot);
        match exit {
            Exit::Code(0) => Ok(CompileStats {
                queued,
                compiled,
                peak_rss_kib: message
                    .lines()
                    .find_map(|l| l.strip_prefix(child::PEAK_PREFIX)?.parse().ok()),
            }),
            Exit::Code(child::EXIT_INVALID) => Err(CompileError::Invalid {
                path: path.to_string(),
                message,
            }),
            Exit::Signal(libc::SIGKILL) if cgroup.oom_kills() > oom_before => {
                Err(CompileError::Memory {
                    path: path.to_string(),
                    limit: human_bytes(self.config.memory),
                })
            }
            other => Err(CompileError::Failed {
                path: path.to_string(),
                reason: match (other, message.is_empty()) {
                    (_, false) => message,
                    (Exit::Signal(signal), true) => format!("killed by signal {signal}"),
                    (Exit::Code(code), true) => format!("exit code {code}"),
                },
            }),
        }
    }
}

/// When a compile still runs after this long, the shim logs its progress (and again at each
/// [`PROGRESS_EVERY`]): a large module takes long on a small node, and kubelet is waiting.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// [`exits::wait`], logging the compile's progress at info while it runs.
fn wait_logging_progress(
    child: &mut std::process::Child,
    deadline: Instant,
    path: &str,
    bytes: u64,
) -> Option<Exit> {
    let started = Instant::now();
    let mut next_log = started + PROGRESS_AFTER;
    loop {
        if let Some(exit) = exits::wait(child, deadline.min(next_log)) {
            return Some(exit);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tracing::info!(
            module = path,
            bytes,
            elapsed_s = started.elapsed().as_secs(),
            limit_s = deadline.saturating_duration_since(started).as_secs(),
            "still compiling"
        );
        next_log += PROGRESS_EVERY;
    }
}

/// Reads at most [`MAX_STDERR`] bytes of the compile process's stderr (and drains the rest, so
/// it never blocks on a full pipe), on a thread of its own.
fn read_bounded(stderr: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut stderr = stderr;
        let mut kept = Vec::new();
        let _ = (&mut stderr).take(MAX_STDERR).read_to_end(&mut kept);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        String::from_utf8_lossy(&kept).trim().to_string()
    })
}

/// Where the node's compile slots live: beside the module cache, shared by every engine.
pub fn slot_dir(cache_base: &Path) -> PathBuf {
    cache_base.join("compile-slots")
}
