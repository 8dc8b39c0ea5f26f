//! The libcontainer [`Executor`] installed in every container: it runs inside the container's
//! init process after namespaces, cgroups, pivot_root, capabilities and seccomp are set up,
//! and either runs the prepared wasm module or `execve`s the native program.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::Spec;

use crate::engine::{EngineError, GuestContext, WasmEngine};
use crate::grants::{EnvGrant, Grants};
use crate::memory_limit::{guest_share, MemoryLimit};
use crate::spec;

/// Exit code of a guest that trapped, as the wasmtime CLI reports it (128 + SIGABRT).
pub const TRAP_EXIT_CODE: i32 = 134;
/// Exit code of a guest stopped at its memory limit: what an OOM kill gives (128 + SIGKILL).
pub const MEMORY_LIMIT_EXIT_CODE: i32 = 137;

#[derive(Clone)]
pub enum WorkloadExecutor<E: WasmEngine> {
    Native,
    Wasm {
        engine: E,
        module: E::Module,
        /// argv[0] for the guest: the module path inside the container.
        module_path: String,
        func: Option<String>,
        /// wasmpod's guest profile, installed just before guest code runs.
        seccomp: seccompiler::BpfProgram,
        /// Where a memory-limit stop is reported to the shim (see [`crate::oom`]).
        oom_report: Option<Arc<OwnedFd>>,
        /// The memory layout of the zygote worker, which the init is a fork of (see
        /// [`crate::guest::MmLayout`]); `None` when it could not be read.
        layout: Option<crate::guest::MmLayout>,
    },
}

impl<E: WasmEngine> Executor for WorkloadExecutor<E> {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        match self {
            Self::Native => {
                reset_signal_dispositions();
                DefaultExecutor {}.exec(spec)
            }
            Self::Wasm {
                engine,
                module,
                module_path,
                func,
                seccomp,
                oom_report,
                layout,
            } => {
                let mut guest = guest_context(spec, module_path, func.clone());
                // Closes every descriptor but stdio: `oom_report`'s too, which is mapped
                // first and never dropped (this process ends with exit below).
                let oom_mark = match crate::guest::prepare_guest(
                    &guest,
                    layout.as_ref(),
                    oom_report.as_ref().map(|fd| fd.as_fd()),
                ) {
                    Ok(mark) => mark,
                    Err(e) => {
                        eprintln!("wasmpod: {module_path}: {e}");
                        std::process::exit(1);
                    }
                };
                // From here the shim's Update can change the cap through the shared page.
                if let (Some(mark), Some(limit)) = (&oom_mark, guest.memory_limit) {
                    guest.memory_limit = Some(MemoryLimit::live(limit.bytes(), mark.live_limit()));
                }
                if let Err(e) = crate::seccomp::install(seccomp) {
                    eprintln!("wasmpod: {module_path}: {e}");
                    std::process::exit(1);
                }
                let code = match engine.run(module, &guest) {
                    Ok(code) => code,
                    Err(EngineError::Trap(msg)) => {
                        eprintln!("wasmpod: {module_path}: wasm trap: {msg}");
                        TRAP_EXIT_CODE
                    }
                    Err(e @ EngineError::MemoryLimit { .. }) => {
                        eprintln!("wasmpod: {module_path}: {e}");
                        if let Some(mark) = &oom_mark {
                            mark.report_memory_limit();
                        }
                        MEMORY_LIMIT_EXIT_CODE
                    }
                    Err(e) => {
                        eprintln!("wasmpod: {module_path}: {e}");
                        1
                    }
                };
                std::process::exit(code)
            }
        }
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        match self {
            Self::Native => DefaultExecutor {}.validate(spec),
            // Runs in the init before it waits for Start: no window where a stop is dropped.
            Self::Wasm { .. } => {
                install_stop_handlers();
                Ok(())
            }
        }
    }
}

/// An ignored signal survives execve, and our ancestry ignores several (Rust ignores SIGPIPE;
/// the shim and its workers must, since the shim log FIFO can lose its reader; the zygote
/// ignores SIGCHLD). A native program starts with every signal at its default disposition.
/// The raw syscall is used because glibc refuses to touch the signals it reserves (32, 33).
fn reset_signal_dispositions() {
    // The kernel's `struct sigaction` (not libc's): handler, flags, restorer, mask.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in 1..=64 {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: valid pointer to a kernel sigaction, null old action, 8-byte sigset; the
            // init process is single-threaded and about to execve.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                );
            }
        }
    }
}

fn guest_context(spec: &Spec, module_path: &str, func: Option<String>) -> GuestContext {
    let mut args = spec::args(spec).to_vec();
    if let Some(first) = args.first_mut() {
        *first = module_path.to_string();
    }
    let cwd = spec
        .process()
        .as_ref()
        .map(|p| p.cwd().clone())
        .unwrap_or_else(|| PathBuf::from("/"));
    // Create checked the annotations: an error here means the spec changed under us.
    let grants = Grants::from_spec(spec).unwrap_or_else(|e| {
        eprintln!("wasmpod: {module_path}: {e}");
        std::process::exit(1)
    });
    let env = match grants.env {
        EnvGrant::Spec => spec::env(spec).to_vec(),
        EnvGrant::None => Vec::new(),
    };
    GuestContext {
        args,
        env,
        cwd,
        func,
        memory_limit: guest_memory_limit(spec),
        grants,
    }
}

/// The guest's share ([`guest_share`]) of `linux.resources.memory.limit`: the engine keeps
/// the rest for itself (code, stacks, WASI state), so it stops a growing guest before the
/// kernel's OOM killer does.
fn guest_memory_limit(spec: &Spec) -> Option<MemoryLimit> {
    let limit = spec
        .linux()
        .as_ref()?
        .resources()
        .as_ref()?
        .memory()
        .as_ref()?
        .limit()
        .filter(|l| *l > 0)? as u64;
    Some(MemoryLimit::fixed(guest_share(limit)))
}

/// The guest runs as PID 1 of its PID namespace, where the kernel drops signals that have no
/// handler. A wasm guest cannot install one, so we do: SIGTERM, SIGINT and SIGHUP end the
/// guest at once with 128 + signal, even in the middle of a busy loop.
fn install_stop_handlers() {
    extern "C" fn on_stop(signal: libc::c_int) {
        const MSG: &[u8] = b"wasmpod: stop signal received, ending wasm guest\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(128 + signal);
        }
    }
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only calls async-signal-safe functions.
        unsafe {
            libc::signal(
                signal,
                on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}
