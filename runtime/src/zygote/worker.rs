//! Inside the zygote: the request loop, and the per-container worker it forks.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::error::LibcontainerError;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::socket::{send, MsgFlags};
use nix::unistd::{fork, ForkResult};

use super::prepared::{Prepared, WasmParts};
use super::protocol::{CreateReply, CreateRequest, Failure, PreparedWorkload};
use crate::engine::WasmEngine;
use crate::executor::WorkloadExecutor;
use crate::stdio::Stdio;
use crate::ErrorKind;

/// How the zygote came to be.
pub(super) enum Parent {
    /// Forked by the shim's main thread at start-up: it dies with that thread.
    Forked,
    /// Executed by a shim thread that may end before the shim does (see `respawn`): the
    /// parent-death signal would follow that thread, so the zygote relies on the EOF of its
    /// socket alone, which comes when the shim is gone.
    Executed,
}

/// The zygote's main loop; never returns.
pub(super) fn serve<E: WasmEngine>(socket: OwnedFd, parent: Parent) -> ! {
    // SAFETY: prctl and signal disposition changes in a single-threaded process.
    unsafe {
        if let Parent::Forked = parent {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        // Workers are reaped by the kernel; none of them is waited for.
        let _ = signal(Signal::SIGCHLD, SigHandler::SigIgn);
    }
    detach_stdio();
    let mut prepared = Prepared::<E>::new();
    prepared.warm();
    loop {
        let received = match super::receive(&socket) {
            Ok(Some(message)) => message,
            // The shim closed its end or is gone.
            Ok(None) | Err(_) => unsafe { libc::_exit(0) },
        };
        let Some(reply) = received.reply else {
            continue;
        };
        // The zygote builds what the worker runs, so the next container inherits it too.
        let job = match parse(&received.body).and_then(|r| prepare(&mut prepared, r)) {
            Ok(job) => job,
            Err(failure) => {
                send_reply(&reply, &failure.into_reply());
                continue;
            }
        };
        let threads = threads_of_self();
        if threads != 1 {
            let failure = Failure::internal(format!(
                "zygote has {threads} threads after preparing a module; refusing to fork"
            ));
            send_reply(&reply, &failure.into_reply());
            continue;
        }
        // SAFETY: the zygote is single-threaded (checked just above).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(socket);
                let module_reused = job.wasm.as_ref().is_some_and(|w| w.parts.reused);
                let message = match handle(job, received.oom_report) {
                    Ok(pid) => CreateReply::Created { pid, module_reused },
                    Err(failure) => failure.into_reply(),
                };
                send_reply(&reply, &message);
                unsafe { libc::_exit(0) }
            }
            Ok(ForkResult::Parent { .. }) => {
                drop(reply);
                drop(received.oom_report);
            }
            Err(e) => {
                let failure = Failure::new(
                    ErrorKind::Unavailable,
                    format!("zygote cannot fork a container worker: {e}"),
                );
                send_reply(&reply, &failure.into_reply());
            }
        }
    }
}

fn send_reply(reply: &OwnedFd, message: &CreateReply) {
    if let Ok(bytes) = serde_json::to_vec(message) {
        let _ = send(reply.as_raw_fd(), &bytes, MsgFlags::empty());
    }
}

fn parse(body: &[u8]) -> Result<CreateRequest, Failure> {
    serde_json::from_slice(body).map_err(|e| Failure::internal(format!("bad zygote request: {e}")))
}

/// The zygote must not hold containerd's pipes: `start` waits for EOF on the shim's stdout.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
}

pub(super) fn threads_of_self() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// A request with its workload made ready in the zygote.
struct Job<E: WasmEngine> {
    request: CreateRequest,
    wasm: Option<WasmJob<E>>,
}

struct WasmJob<E: WasmEngine> {
    parts: WasmParts<E>,
    module_path: String,
    func: Option<String>,
}

fn prepare<E: WasmEngine>(
    prepared: &mut Prepared<E>,
    request: CreateRequest,
) -> Result<Job<E>, Failure> {
    let wasm = match &request.workload {
        PreparedWorkload::Native => None,
        PreparedWorkload::Wasm {
            artifact,
            module_sha256,
            module_path,
            func,
        } => Some(WasmJob {
            parts: prepared
                .wasm(artifact, module_sha256, func.as_deref())
                .map_err(|e| e.context(module_path))?,
            module_path: module_path.clone(),
            func: func.clone(),
        }),
    };
    Ok(Job { request, wasm })
}

/// Builds one container in this freshly forked worker; returns the init pid.
fn handle<E: WasmEngine>(job: Job<E>, oom_report: Option<OwnedFd>) -> Result<i32, Failure> {
    // SAFETY: restore default SIGCHLD so libcontainer can wait for its intermediate process.
    unsafe {
        let _ = signal(Signal::SIGCHLD, SigHandler::SigDfl);
    }
    let request = job.request;
    let executor = match job.wasm {
        None => WorkloadExecutor::Native,
        Some(wasm) => WorkloadExecutor::Wasm {
            engine: wasm.parts.engine,
            module: wasm.parts.module,
            module_path: wasm.module_path,
            func: wasm.func,
            seccomp: wasm.parts.seccomp,
            oom_report: oom_report.map(std::sync::Arc::new),
            // Read here: the init is a fork of this process and may have no /proc of its own.
            layout: crate::guest::MmLayout::of_self().ok(),
        },
    };
    // With a terminal, the pty slave is the process's stdio; the shim copies the FIFOs.
    let stdio = match request.console_socket {
        Some(_) => Stdio::default(),
        None => Stdio::open(&request.stdin, &request.stdout, &request.stderr)
            .map_err(|e| Failure::internal(e.to_string()))?,
    };

    // The guarantee this whole process exists for: libcontainer forks from here.
    let threads = threads_of_self();
    if threads != 1 {
        return Err(Failure::internal(format!(
            "refusing to create container: worker has {threads} threads, fork would be unsafe"
        )));
    }
    build(&request, executor, stdio)
}

/// libcontainer's failure, with its kind (an existing id, a bad spec, ...).
fn creating(e: LibcontainerError) -> Failure {
    Failure::new(
        ErrorKind::of_libcontainer(&e),
        format!("creating container: {e}"),
    )
}

fn build<E: WasmEngine>(
    request: &CreateRequest,
    executor: WorkloadExecutor<E>,
    stdio: Stdio,
) -> Result<i32, Failure> {
    let mut builder = ContainerBuilder::new(request.id.clone(), SyscallType::Linux)
        .with_executor(executor)
        .with_console_socket(request.console_socket.as_ref())
        .with_root_path(&request.root)
        .map_err(creating)?;
    if let Some(fd) = stdio.stdin {
        builder = builder.with_stdin(fd);
    }
    if let Some(fd) = stdio.stdout {
        builder = builder.with_stdout(fd);
    }
    if let Some(fd) = stdio.stderr {
        builder = builder.with_stderr(fd);
    }
    if let Some(process) = &request.exec_process {
        let pid = builder
            .as_tenant()
            .with_process(Some(process))
            .with_detach(true)
            .build()
            .map_err(creating)?;
        return Ok(pid.as_raw());
    }
    let container = builder
        .validate_id()
        .map_err(creating)?
        .as_init(Path::new(&request.bundle))
        .with_systemd(request.systemd_cgroup)
        .with_detach(true)
        .build()
        .map_err(creating)?;
    let pid = container.pid().ok_or_else(|| {
        Failure::internal("creating container: libcontainer returned no init pid")
    })?;
    Ok(pid.as_raw())
}
