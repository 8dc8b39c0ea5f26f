//! The long-running shim daemon: one per pod (group), serving containerd's task API over ttrpc.
//!
//! Start-up order matters for fork safety: the zygote is forked by `lib::run` before anything
//! here runs; then signals are blocked (so the signal thread alone receives them), and only then
//! are threads created.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::protos::ttrpc::Server;
use containerd_shim::protos::Task;
use containerd_shim::{ExitSignal, Flags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use wasmpod_runtime::{compile, WasmEngine, Zygote};

use crate::console::Consoles;
use crate::events::Events;
use crate::execs::{Execs, Exited};
use crate::lifetime::Lifetime;
use crate::oom;
use crate::oom_watch::OomEvents;
use crate::service::Service;
use crate::start_lock;
use crate::tasks::Tasks;

type Methods = std::collections::HashMap<
    String,
    Box<dyn containerd_shim::protos::ttrpc::MethodHandler + Send + Sync>,
>;

/// The task service under the names of both task API versions: containerd 1.6 and 1.7 call
/// `containerd.task.v2.Task`, 2.x calls `containerd.task.v3.Task`; the messages are the same.
fn task_methods(task: Arc<dyn Task + Send + Sync>) -> Methods {
    let mut methods = containerd_shim::protos::create_task(task.clone());
    for (name, handler) in containerd_shim::protos::create_task(task) {
        methods.insert(name.replace(".task.v3.", ".task.v2."), handler);
    }
    methods
}

fn socket_path(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

/// Binds the ttrpc socket `0600` whatever containerd's umask: created under umask `0177` (so it
/// is never reachable by others, not even between bind and chmod), then set explicitly.
fn bind(address: &str) -> anyhow::Result<Server> {
    let path = socket_path(address);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)?;
    }
    let server = with_umask(Mode::from_bits_truncate(0o177), || bind_once(address))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(server)
}

fn bind_once(address: &str) -> anyhow::Result<Server> {
    match Server::new().bind(address) {
        Ok(server) => Ok(server),
        Err(containerd_shim::protos::ttrpc::Error::Others(msg)) if msg.contains("in use") => {
            if start_lock::is_listening(address) {
                anyhow::bail!("another shim already serves {address}");
            }
            // Nobody listens: a killed shim left it behind.
            std::fs::remove_file(socket_path(address))?;
            Ok(Server::new().bind(address)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs `f` with the process umask set to `mask`. The umask is process-wide: call this only
/// while no other thread creates files (here: at start-up, before the server runs).
fn with_umask<T>(mask: Mode, f: impl FnOnce() -> T) -> T {
    let old = umask(mask);
    let result = f();
    umask(old);
    result
}

/// What the signal thread needs to reap children and publish their ends.
struct Reaper {
    zygote: &'static Zygote,
    root: PathBuf,
    tasks: Arc<Tasks>,
    execs: Arc<Execs>,
    events: Arc<Events>,
    oom: Arc<OomEvents>,
    consoles: Arc<Consoles>,
}

impl Reaper {
    fn of<E: WasmEngine>(zygote: &'static Zygote, service: &Service<E>) -> Self {
        Reaper {
            zygote,
            root: service.root.clone(),
            tasks: service.tasks.clone(),
            execs: service.execs.clone(),
            events: service.events.clone(),
            oom: service.oom.clone(),
            consoles: service.consoles.clone(),
        }
    }
}

/// Reaps every child: container inits and exec processes are reparented to us (a child
/// subreaper) when their zygote worker exits.
fn reap_children(r: &Reaper) {
    let (root, tasks, execs, events) = (&r.root, &*r.tasks, &*r.execs, &*r.events);
    let (oom, consoles, zygote) = (&*r.oom, &*r.consoles, r.zygote);
    loop {
        let (pid, code) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                if compile::exits::record(pid.as_raw(), compile::exits::Exit::Code(code)) {
                    continue;
                }
                (pid, code)
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                let exit = compile::exits::Exit::Signal(sig as i32);
                if compile::exits::record(pid.as_raw(), exit) {
                    continue;
                }
                (pid, 128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "waitpid");
                return;
            }
        };
        // Not a container: its exit must not wait as unclaimed for a container given its pid.
        if zygote.is_zygote_exit(pid) {
            tracing::warn!(
                zygote = pid.as_raw(),
                code,
                "the zygote ended; the next Create starts a fresh one"
            );
            continue;
        }
        match execs.record_exit(pid.as_raw(), code, tasks) {
            Exited::Task(task) => {
                publish_exit(root, &task, events, oom, consoles);
                tasks.exit_published(&task.id);
            }
            Exited::Exec(exec) => {
                tracing::info!(id = %exec.id, exec_id = %exec.exec_id, code, "exec exited");
                consoles.finish(&exec.id, &exec.exec_id);
                events.exec_exited(&exec);
            }
            Exited::Unknown => {}
        }
    }
}

/// Publishes a container's end: TaskOOM first when it ran out of memory and that was not
/// published while it ran (so CRI has the reason when it records the exit), then TaskExit.
/// Its terminal's output is copied first.
pub(crate) fn publish_exit(
    root: &Path,
    task: &crate::tasks::Task,
    events: &Events,
    oom: &OomEvents,
    consoles: &Consoles,
) {
    let code = task.exit.as_ref().map(|e| e.code);
    tracing::info!(id = %task.id, pid = task.pid, code, "container exited");
    consoles.finish(&task.id, "");
    oom::publish_at_exit(root, task, oom);
    events.exited(task);
}

fn spawn_signal_thread(signals: SigSet, reaper: Reaper) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match signals.wait() {
                Ok(Signal::SIGCHLD) => reap_children(&reaper),
                // containerd stops shims through Shutdown; a stray TERM must not orphan containers.
                Ok(sig) => tracing::info!(signal = %sig, "ignoring signal"),
                Err(e) => tracing::warn!(error = %e, "sigwait"),
            }
        })?;
    Ok(())
}

pub fn run<E: WasmEngine>(flags: &Flags, zygote: &'static Zygote) -> anyhow::Result<()> {
    // SAFETY: prctl on our own process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        anyhow::bail!(
            "cannot become a child subreaper: {}",
            std::io::Error::last_os_error()
        );
    }
    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    signals.thread_block()?;
    // The signal thread reaps every child, compile processes included, and hands theirs over.
    compile::exits::use_external_reaper();
    // Threads of the exporter, if the environment asks for one: signals are blocked by now.
    crate::otel::init(E::NAME);

    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| anyhow::anyhow!("TTRPC_ADDRESS is not set (containerd sets it)"))?;
    let exit = Arc::new(ExitSignal::default());
    let events = Arc::new(Events::new(&ttrpc_address, flags.namespace.clone()));
    let oom = OomEvents::start(events.clone())?;
    let service = Service::<E>::new(
        zygote,
        &flags.namespace,
        &flags.address,
        events,
        oom,
        Arc::new(Lifetime::new(&flags.socket, exit.clone())),
    );
    spawn_signal_thread(signals, Reaper::of(zygote, &service))?;

    let mut server = bind(&flags.socket)?.register_service(task_methods(Arc::new(service)));
    server.start()?;
    tracing::info!(socket = %flags.socket, zygote = zygote.pid().as_raw(), "shim serving");
    // Tell `start` we are up: it reads our stdout until EOF.
    let _ = nix::unistd::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);

    exit.wait();
    server.shutdown();
    // What is left (spans are flushed at each Shutdown already, see `Service::shutdown`).
    crate::otel::shutdown();
    if let Err(e) = std::fs::remove_file(socket_path(&flags.socket)) {
        if e.kind() != ErrorKind::NotFound {
            tracing::warn!(error = %e, "removing shim socket");
        }
    }
    Ok(())
}
