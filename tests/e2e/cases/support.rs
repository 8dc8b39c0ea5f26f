//! Helpers shared by the lifecycle cases (signals, observe, cleanup, grouping): driving
//! `ctr` (run, wait, kill, delete), best-effort cleanup, and finding a container's processes
//! and shim daemon on the host. A plain module, not a case module: it has no `cases()`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use wasmpod_e2e::leaks::{self, poll, wait_until};

use wasmpod_e2e::{CmdOutput, Ctr, Env, Running};

/// How long a container may take to reach RUNNING (image unpack, module compile, 2 cores).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed container may take to be reported as exited. The shim acts at once;
/// the margin covers two `ctr` round trips on a 2-core VM busy with parallel builds (2 s was
/// exceeded there). What this catches is a kill that does not end the task (e.g. a frozen
/// cgroup that is never thawed), which would otherwise wait out [`EXIT_TIMEOUT`].
pub(crate) const EXIT_LIMIT: Duration = Duration::from_secs(5);
/// How long we wait for an exit at all before giving up (much longer than [`EXIT_LIMIT`], so
/// a slow exit is reported with its real duration rather than as a timeout).
pub(crate) const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// libcontainer's state of the containers of namespace `default`.
pub(crate) const STATE_ROOT: &str = "/run/wasmpod/default";
/// The CRI annotation that groups containers of one pod into one shim.
pub(crate) const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// The cgroup v1 memory controller (ctr puts containers in `default/<id>` below it).
pub(crate) const MEMORY_CGROUP: &str = "/sys/fs/cgroup/memory";

/// Best-effort removal of containers a failed case left behind (kill, force-delete the task,
/// delete the container). Runs on drop, after every other local of the case is gone.
pub(crate) struct Cleanup<'a> {
    env: &'a Env,
    ids: Vec<String>,
}

impl<'a> Cleanup<'a> {
    pub(crate) fn new(env: &'a Env, ids: &[&str]) -> Self {
        Cleanup {
            env,
            ids: ids.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let ctr = self.env.ctr();
        let Ok(listed) = ctr.run(&["container", "ls", "-q"]) else {
            return;
        };
        let existing: BTreeSet<&str> = listed.stdout.split_whitespace().collect();
        for id in self.ids.iter().filter(|id| existing.contains(id.as_str())) {
            let _ = ctr.task_kill(id, "SIGKILL");
            let _ = ctr.run(&["task", "delete", "-f", id]);
            let _ = ctr.container_delete(id);
        }
    }
}

/// The FIFO directory of the private containerd (as the harness's own `run` helpers use).
pub(crate) fn fifo_dir(env: &Env) -> Result<String> {
    let dir = env.containerd().base().join("fifo");
    dir.to_str()
        .map(str::to_string)
        .with_context(|| format!("fifo dir {} is not UTF-8", dir.display()))
}

/// `run MODE FLAGS... --fifo-dir DIR --runtime RUNTIME IMAGE ID ARGS...`
pub(crate) fn run_args(
    fifo: &str,
    mode: &str,
    flags: &[&str],
    runtime: &str,
    image: &str,
    id: &str,
    args: &[&str],
) -> Vec<String> {
    let mut all = vec!["run".to_string(), mode.to_string()];
    all.extend(flags.iter().map(|s| s.to_string()));
    for s in ["--fifo-dir", fifo, "--runtime", runtime, image, id] {
        all.push(s.to_string());
    }
    all.extend(args.iter().map(|s| s.to_string()));
    all
}

/// Starts a foreground `ctr run --rm FLAGS... IMAGE ID ARGS...` as a child process: it exits
/// with the container's exit code once the container ends.
pub(crate) fn spawn_run_rm(
    env: &Env,
    runtime: &str,
    flags: &[&str],
    image: &str,
    id: &str,
    args: &[&str],
) -> Result<Running> {
    let fifo = fifo_dir(env)?;
    let all = run_args(&fifo, "--rm", flags, runtime, image, id, args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    env.ctr().spawn(&all, false)
}

/// `ctr run -d FLAGS... IMAGE ID ARGS...`, which must succeed.
pub(crate) fn run_detached(
    env: &Env,
    runtime: &str,
    flags: &[&str],
    image: &str,
    id: &str,
    args: &[&str],
) -> Result<CmdOutput> {
    let fifo = fifo_dir(env)?;
    let all = run_args(&fifo, "-d", flags, runtime, image, id, args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    env.ctr().run(&all)?.ok()
}

/// Waits until task `id` of the foreground `ctr run` is RUNNING; fails with ctr's output when
/// ctr exits first or the task does not get there in [`START_TIMEOUT`].
pub(crate) fn wait_running(env: &Env, mut running: Running, id: &str) -> Result<Running> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = None;
    loop {
        if running.has_exited() {
            let out = running.wait(Duration::from_secs(1))?;
            bail!("ctr exited before task {id} was RUNNING (last status {last:?}): {out}");
        }
        last = env.ctr().task_status(id).ok().flatten();
        if last.as_deref() == Some("RUNNING") {
            return Ok(running);
        }
        if Instant::now() >= deadline {
            let out = running.wait(Duration::ZERO)?;
            bail!("task {id} not RUNNING after {START_TIMEOUT:?} (last status {last:?}): {out}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `ctr task ls` until task `id` has status `want`; fails with the last status seen.
pub(crate) fn wait_status(env: &Env, id: &str, want: &str, timeout: Duration) -> Result<()> {
    let mut last = None;
    let reached = wait_until(timeout, || {
        last = env.ctr().task_status(id).ok().flatten();
        last.as_deref() == Some(want)
    });
    ensure!(
        reached,
        "task {id} not {want} after {timeout:?}; last status {last:?}"
    );
    Ok(())
}

/// Sends `signal` with `ctr task kill` and waits for the foreground `ctr run` to exit.
/// Returns ctr's output and the time from just before the kill to the observed exit.
pub(crate) fn kill_and_wait(
    env: &Env,
    mut running: Running,
    id: &str,
    signal: &str,
) -> Result<(CmdOutput, Duration)> {
    let started = Instant::now();
    let kill = env.ctr().task_kill(id, signal)?;
    if !kill.success() {
        let out = running.wait(Duration::from_secs(1))?;
        bail!("{kill}\nforeground ctr: {out}");
    }
    let deadline = started + EXIT_TIMEOUT;
    while !running.has_exited() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let out = running.wait(Duration::ZERO)?;
    ensure!(
        !out.timed_out,
        "`ctr task kill -s {signal} {id}` did not end the task within {EXIT_TIMEOUT:?}: {out}"
    );
    Ok((out, elapsed))
}

/// The PID column of `ctr task ls` for task `id`.
pub(crate) fn task_ls_pid(env: &Env, id: &str) -> Result<u32> {
    task_pid(env.ctr(), id)
}

/// The PID column of `ctr task ls` for task `id`, in `ctr`'s namespace.
pub(crate) fn task_pid(ctr: &Ctr, id: &str) -> Result<u32> {
    let rows = ctr.task_rows()?;
    let pid = rows.iter().find(|row| row.id == id).and_then(|row| row.pid);
    pid.with_context(|| format!("no pid for task {id} in `ctr task ls`: {rows:?}"))
}

/// SIGKILL, wait until the task can be deleted, delete it and the container.
pub(crate) fn kill_and_delete(env: &Env, id: &str) -> Result<()> {
    let ctr = env.ctr();
    ctr.task_kill(id, "SIGKILL")?.ok()?;
    let mut last = None;
    let deleted = wait_until(Duration::from_secs(10), || {
        let out = ctr.task_delete(id);
        let ok = out.as_ref().is_ok_and(CmdOutput::success);
        last = out.ok();
        ok
    });
    ensure!(
        deleted,
        "task {id} could not be deleted after SIGKILL; last attempt: {}",
        last.map_or("<ctr did not start>".to_string(), |o| o.to_string())
    );
    ctr.container_delete(id)?.ok()?;
    Ok(())
}

/// `/proc/PID/stat`: (state, ppid, start time in clock ticks).
pub(crate) fn proc_stat(pid: u32) -> Option<(char, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the fields follow the last `)`.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// A process identified by pid and start time (so a reused pid is not mistaken for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Proc {
    pub(crate) pid: u32,
    pub(crate) start: u64,
}

impl Proc {
    pub(crate) fn of(pid: u32) -> Option<Proc> {
        proc_stat(pid).map(|(_, _, start)| Proc { pid, start })
    }

    /// True while it exists and is not a zombie.
    pub(crate) fn alive(&self) -> bool {
        proc_stat(self.pid).is_some_and(|(state, _, start)| start == self.start && state != 'Z')
    }

    pub(crate) fn describe(&self) -> String {
        let stat = proc_stat(self.pid);
        let cmd = leaks::cmdline(self.pid).unwrap_or_default();
        format!("pid {} {stat:?}: {cmd}", self.pid)
    }
}

/// A process of the engine's shim binary started as a daemon (its command line has `-socket`)
/// by our containerd: the daemon itself, its zygote, and wasm container inits (all forks of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShimProc {
    pub(crate) proc: Proc,
    pub(crate) ppid: u32,
    /// The `-id` argument: the container whose `start` spawned the daemon.
    pub(crate) id: String,
    /// The `-socket` argument (`unix:///run/containerd/s/HASH`).
    pub(crate) socket: String,
}

pub(crate) fn raw_args(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

pub(crate) fn arg_after(args: &[String], flag: &str) -> Option<String> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

/// Every shim daemon-like process (see [`ShimProc`]) of the containerd of `env`.
pub(crate) fn shim_processes(env: &Env) -> Vec<ShimProc> {
    let address = env.containerd().address().to_string_lossy().into_owned();
    leaks::processes_matching(&env.shim_binary())
        .into_iter()
        .filter_map(|pid| {
            let args = raw_args(pid)?;
            if !args.first()?.ends_with(&env.shim_binary())
                || arg_after(&args, "-address")? != address
            {
                return None;
            }
            let socket = arg_after(&args, "-socket")?;
            let id = arg_after(&args, "-id")?;
            let (_, ppid, start) = proc_stat(pid)?;
            Some(ShimProc {
                proc: Proc { pid, start },
                ppid,
                id,
                socket,
            })
        })
        .collect()
}

/// True when `pid`'s memory cgroup is a container's (`/default/<id>`, as ctr sets it).
pub(crate) fn in_container_cgroup(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
        text.lines().any(|line| {
            let mut fields = line.splitn(3, ':');
            let _ = fields.next();
            let controllers = fields.next().unwrap_or("");
            controllers.split(',').any(|c| c == "memory")
                && fields
                    .next()
                    .is_some_and(|path| path.starts_with("/default/"))
        })
    })
}

/// The shim daemons among `procs`: those whose parent is not itself a shim process on the
/// same socket (the zygote's parent is the daemon, workers' the zygote) and that are not in a
/// container's cgroup (wasm inits and libcontainer's intermediate processes are forks too).
pub(crate) fn daemons(procs: &[ShimProc]) -> Vec<ShimProc> {
    procs
        .iter()
        .filter(|p| {
            !procs
                .iter()
                .any(|q| q.proc.pid == p.ppid && q.socket == p.socket)
                && !in_container_cgroup(p.proc.pid)
        })
        .cloned()
        .collect()
}

/// The one shim daemon started for container `id`, and every process on its socket.
pub(crate) fn daemon_of(env: &Env, id: &str) -> Result<(ShimProc, Vec<ShimProc>)> {
    let all = shim_processes(env);
    let found: Vec<ShimProc> = daemons(&all).into_iter().filter(|d| d.id == id).collect();
    ensure!(
        found.len() == 1,
        "expected one shim daemon with -id {id}, found {found:#?} among {all:#?}"
    );
    let daemon = found[0].clone();
    let family = all
        .into_iter()
        .filter(|p| p.socket == daemon.socket)
        .collect();
    Ok((daemon, family))
}

pub(crate) fn state_dir(id: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(id)
}

pub(crate) fn memory_cgroup(id: &str) -> PathBuf {
    Path::new(MEMORY_CGROUP).join("default").join(id)
}

/// The `unix://` address of the shim socket of group `key` of `env`'s containerd.
pub(crate) fn group_socket(env: &Env, key: &str) -> (PathBuf, String) {
    let path = leaks::shim_socket_for(env.containerd().address(), "default", key);
    let url = format!("unix://{}", path.display());
    (path, url)
}

/// A long-running native and wasm workload: (name, image, args).
pub(crate) fn sleepers(env: &Env) -> Result<[(&'static str, &str, &'static [&'static str]); 2]> {
    Ok([
        ("native", env.busybox_image()?, &["sleep", "300"]),
        (
            "wasm",
            env.wasm_image()?,
            &["/testprog.wasm", "sleep", "300"],
        ),
    ])
}

/// The value of `field` in the shim's log line `message` about container `id`, from
/// containerd's log (the shim quotes string fields and containerd escapes the quotes). Waits a
/// little: the line may still be on its way through the shim's log FIFO.
pub fn shim_log_field(env: &Env, message: &str, id: &str, field: &str) -> Result<String> {
    let prefix = format!("{message} id=");
    let key = format!("{field}=");
    let what = format!("a \"{message}\" line with {field} for {id} in containerd.log");
    poll(Duration::from_secs(5), &what, || {
        let log = std::fs::read_to_string(env.containerd().log_path())?;
        Ok(log
            .lines()
            .find(|l| l.contains(&prefix) && l.contains(id))
            .and_then(|l| l.split_once(key.as_str()).map(|(_, rest)| rest.to_string()))
            .map(|v| v.trim_start_matches(['\\', '"']).to_string()))
    })
}

/// SIGKILLs the shim daemon of a running container. containerd notices the closed ttrpc
/// connection and runs the shim binary's `delete` action, which must kill the container and
/// remove its cgroup, mounts and state; the socket of the dead shim must go too.
pub(crate) fn kill_shim_then_delete(env: &Env, id: &str) -> Result<()> {
    let init = task_ls_pid(env, id)?;
    let init = Proc::of(init).with_context(|| format!("init {init} not in /proc"))?;
    let (daemon, family) = daemon_of(env, id)?;
    let socket = leaks::shim_socket_for(env.containerd().address(), "default", id);
    ensure!(
        state_dir(id).is_dir() && socket.exists(),
        "running container {id}: state dir {} or socket {} missing",
        state_dir(id).display(),
        socket.display()
    );

    ensure!(daemon.proc.alive(), "shim daemon gone before the kill");
    // SAFETY: plain kill(2) of a pid just read from /proc (its start time checked just now).
    let rc = unsafe { libc::kill(daemon.proc.pid as libc::pid_t, libc::SIGKILL) };
    ensure!(
        rc == 0,
        "kill -9 {}: {}",
        daemon.proc.pid,
        std::io::Error::last_os_error()
    );

    let mut status = None;
    let noticed = wait_until(Duration::from_secs(10), || {
        status = env.ctr().task_status(id).ok();
        matches!(status.as_ref(), Some(None))
            || matches!(status, Some(Some(ref s)) if s == "STOPPED")
    });
    ensure!(
        noticed,
        "10 s after the shim was killed, task {id} is still {status:?} (want STOPPED or gone)"
    );
    // The task may already be gone (containerd cleaned up after the dead shim).
    let task_delete = env.ctr().task_delete(id)?;
    let container_delete = env.ctr().container_delete(id)?;
    ensure!(
        container_delete.success(),
        "{container_delete}\n(task delete before it: {task_delete})"
    );

    let mut problems = Vec::new();
    if !wait_until(Duration::from_secs(10), || !init.alive()) {
        problems.push(format!(
            "container process still alive: {}",
            init.describe()
        ));
    }
    if !wait_until(Duration::from_secs(10), || {
        family.iter().all(|p| !p.proc.alive())
    }) {
        for p in family.iter().filter(|p| p.proc.alive()) {
            problems.push(format!("shim process still alive: {}", p.proc.describe()));
        }
    }
    let mut left = Vec::new();
    if !wait_until(Duration::from_secs(10), || {
        left = leaks::leaks_for(env.containerd().address(), id);
        left.is_empty()
    }) {
        problems.extend(left);
    }
    if state_dir(id).exists() {
        problems.push(format!("state dir {}", state_dir(id).display()));
    }
    // Nobody else would ever remove the dead shim's socket from /run/containerd/s: it is
    // recorded as a leak above; remove it so a failing run does not litter the host.
    if socket.exists() && !daemon.proc.alive() {
        let _ = std::fs::remove_file(&socket);
    }
    ensure!(
        problems.is_empty(),
        "after its shim (pid {}) was killed and the container deleted, {id} left behind:\n  {}",
        daemon.proc.pid,
        problems.join("\n  ")
    );
    Ok(())
}
