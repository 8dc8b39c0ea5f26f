//! Lifecycle cases: stop signals and exit codes, `ctr task ps`/`metrics`, memory limits and
//! the OOM killer, clean deletion, many containers in one shim, and a shim killed under
//! containerd's feet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use wasmpod_e2e::leaks::{self, wait_until};
use wasmpod_e2e::paths::SHIM_BINARY;
use wasmpod_e2e::{cases, Case, CmdOutput, Env, Running, RUNC_RUNTIME, WASM_RUNTIME};

pub fn cases() -> Vec<Case> {
    cases![
        wasm_sigterm_busy_loop_143,
        wasm_sigkill_busy_loop_137,
        native_sigterm_sleep_143,
        native_sigkill_sleep_137,
        native_pid1_ignores_sigterm_like_runc,
        task_ps_lists_pid,
        task_metrics_memory,
        memory_limit_in_cgroup,
        native_memory_hog_oom_137,
        delete_leaves_nothing,
        twenty_concurrent_containers_one_shim,
        pod_shim_serves_after_first_container_deleted,
        shim_killed_then_containerd_cleans_up,
        shim_killed_then_containerd_cleans_up_wasm,
    ]
}

/// How long a container may take to reach RUNNING (image unpack, module compile, 2 cores).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed container may take to be reported as exited. The shim acts at once;
/// the margin over "within a second" covers two `ctr` round trips on a loaded 2-core VM.
const EXIT_LIMIT: Duration = Duration::from_secs(2);
/// How long we wait for an exit at all before giving up (much longer than [`EXIT_LIMIT`], so
/// a slow exit is reported with its real duration rather than as a timeout).
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// libcontainer's state of the containers of namespace `default`.
const STATE_ROOT: &str = "/run/wasmpod/default";
/// The CRI annotation that groups containers of one pod into one shim.
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// The cgroup v1 memory controller (ctr puts containers in `default/<id>` below it).
const MEMORY_CGROUP: &str = "/sys/fs/cgroup/memory";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Best-effort removal of containers a failed case left behind (kill, force-delete the task,
/// delete the container). Runs on drop, after every other local of the case is gone.
struct Cleanup<'a> {
    env: &'a Env,
    ids: Vec<String>,
}

impl<'a> Cleanup<'a> {
    fn new(env: &'a Env, ids: &[&str]) -> Self {
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
fn fifo_dir(env: &Env) -> Result<String> {
    let dir = env.containerd().base().join("fifo");
    dir.to_str()
        .map(str::to_string)
        .with_context(|| format!("fifo dir {} is not UTF-8", dir.display()))
}

/// `run MODE FLAGS... --fifo-dir DIR --runtime RUNTIME IMAGE ID ARGS...`
fn run_args(
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
fn spawn_run_rm(
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
fn run_detached(
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
fn wait_running(env: &Env, mut running: Running, id: &str) -> Result<Running> {
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
fn wait_status(env: &Env, id: &str, want: &str, timeout: Duration) -> Result<()> {
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
fn kill_and_wait(
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

/// A foreground container to stop with a signal.
struct KillCase<'a> {
    name: &'a str,
    flags: &'a [&'a str],
    image: &'a str,
    args: &'a [&'a str],
    signal: &'a str,
    code: i32,
}

/// Runs ARGS in the foreground, waits for RUNNING, kills with `signal` and expects ctr to
/// exit with `code` within [`EXIT_LIMIT`] of the kill.
fn kill_case(env: &Env, case: KillCase) -> Result<()> {
    let KillCase {
        name,
        flags,
        image,
        args,
        signal,
        code,
    } = case;
    let runtime = WASM_RUNTIME;
    let id = env.unique_id(name);
    let _cleanup = Cleanup::new(env, &[&id]);
    let running = spawn_run_rm(env, runtime, flags, image, &id, args)?;
    let running = wait_running(env, running, &id)?;
    let (out, elapsed) = kill_and_wait(env, running, &id, signal)?;
    ensure!(
        out.status == Some(code),
        "{signal} should end {args:?} with exit code {code}: {out}"
    );
    // "Within a second": measured from just before `ctr task kill` to the foreground ctr's
    // exit, so it includes two ctr round trips; 2 s allows for those on a 2-core VM.
    ensure!(
        elapsed < EXIT_LIMIT,
        "{signal} took {elapsed:.2?} (limit {EXIT_LIMIT:?}) to end {args:?}: {out}"
    );
    env.assert_no_leaks(&id)
}

/// The PID column of `ctr task ls` for task `id`.
fn task_ls_pid(env: &Env, id: &str) -> Result<u32> {
    let out = env.ctr().run(&["task", "ls"])?.ok()?;
    let pid = out.stdout.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.first() == Some(&id)).then(|| cols.get(1).and_then(|p| p.parse().ok()))?
    });
    pid.with_context(|| format!("no pid for task {id} in {out}"))
}

/// SIGKILL, wait until the task can be deleted, delete it and the container.
fn kill_and_delete(env: &Env, id: &str) -> Result<()> {
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
fn proc_stat(pid: u32) -> Option<(char, u32, u64)> {
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
struct Proc {
    pid: u32,
    start: u64,
}

impl Proc {
    fn of(pid: u32) -> Option<Proc> {
        proc_stat(pid).map(|(_, _, start)| Proc { pid, start })
    }

    /// True while it exists and is not a zombie.
    fn alive(&self) -> bool {
        proc_stat(self.pid).is_some_and(|(state, _, start)| start == self.start && state != 'Z')
    }

    fn describe(&self) -> String {
        let stat = proc_stat(self.pid);
        let cmd = leaks::cmdline(self.pid).unwrap_or_default();
        format!("pid {} {stat:?}: {cmd}", self.pid)
    }
}

/// A process of the wasmtime shim binary started as a daemon (its command line has `-socket`)
/// by our containerd: the daemon itself, its zygote, and wasm container inits (all forks of it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShimProc {
    proc: Proc,
    ppid: u32,
    /// The `-id` argument: the container whose `start` spawned the daemon.
    id: String,
    /// The `-socket` argument (`unix:///run/containerd/s/HASH`).
    socket: String,
}

fn raw_args(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn arg_after(args: &[String], flag: &str) -> Option<String> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

/// Every shim daemon-like process (see [`ShimProc`]) of the containerd of `env`.
fn shim_processes(env: &Env) -> Vec<ShimProc> {
    let address = env.containerd().address().to_string_lossy().into_owned();
    leaks::processes_matching(SHIM_BINARY)
        .into_iter()
        .filter_map(|pid| {
            let args = raw_args(pid)?;
            if !args.first()?.ends_with(SHIM_BINARY) || arg_after(&args, "-address")? != address {
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
fn in_container_cgroup(pid: u32) -> bool {
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
fn daemons(procs: &[ShimProc]) -> Vec<ShimProc> {
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
fn daemon_of(env: &Env, id: &str) -> Result<(ShimProc, Vec<ShimProc>)> {
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

fn state_dir(id: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(id)
}

fn memory_cgroup(id: &str) -> PathBuf {
    Path::new(MEMORY_CGROUP).join("default").join(id)
}

/// The `unix://` address of the shim socket of group `key` of `env`'s containerd.
fn group_socket(env: &Env, key: &str) -> (PathBuf, String) {
    let path = leaks::shim_socket_for(env.containerd().address(), "default", key);
    let url = format!("unix://{}", path.display());
    (path, url)
}

// ---------------------------------------------------------------------------------------------
// 1. Stop signals and exit codes
// ---------------------------------------------------------------------------------------------

/// The shim installs a SIGTERM handler for wasm guests: SIGTERM ends even a loop that makes
/// no syscall, at once, with 128 + 15.
fn wasm_sigterm_busy_loop_143(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    kill_case(
        env,
        KillCase {
            name: "wasm-term-busy",
            flags: &[],
            image,
            args: &["/testprog.wasm", "busy"],
            signal: "SIGTERM",
            code: 143,
        },
    )
}

fn wasm_sigkill_busy_loop_137(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    kill_case(
        env,
        KillCase {
            name: "wasm-kill-busy",
            flags: &[],
            image,
            args: &["/testprog.wasm", "busy"],
            signal: "SIGKILL",
            code: 137,
        },
    )
}

/// busybox sleep has no SIGTERM handler, so as PID 1 of its own PID namespace it would
/// ignore SIGTERM (as under runc, see [`native_pid1_ignores_sigterm_like_runc`]); in the
/// host's PID namespace it is an ordinary process and SIGTERM kills it.
///
/// The host namespace is named through this test process, not `/proc/1`: on the test VM
/// PID 1's `ns` links cannot be opened even by root, so `--with-ns pid:/proc/1/ns/pid` fails
/// with EACCES under runc as well.
fn native_sigterm_sleep_143(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let host_pid_ns = format!("pid:/proc/{}/ns/pid", std::process::id());
    kill_case(
        env,
        KillCase {
            name: "native-term-sleep",
            flags: &["--with-ns", &host_pid_ns],
            image,
            args: &["sleep", "30"],
            signal: "SIGTERM",
            code: 143,
        },
    )
}

fn native_sigkill_sleep_137(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    kill_case(
        env,
        KillCase {
            name: "native-kill-sleep",
            flags: &[],
            image,
            args: &["sleep", "30"],
            signal: "SIGKILL",
            code: 137,
        },
    )
}

/// `sleep 30` as PID 1 of its own PID namespace ignores SIGTERM under runc and under wasmpod
/// alike; SIGKILL then ends both with 137.
fn native_pid1_ignores_sigterm_like_runc(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let ids = [
        (RUNC_RUNTIME, env.unique_id("pid1-runc")),
        (WASM_RUNTIME, env.unique_id("pid1-wasmpod")),
    ];
    let _cleanup = Cleanup::new(env, &[&ids[0].1, &ids[1].1]);
    let mut running = Vec::new();
    for (runtime, id) in &ids {
        let r = spawn_run_rm(env, runtime, &[], image, id, &["sleep", "30"])?;
        running.push(wait_running(env, r, id)?);
    }
    for (runtime, id) in &ids {
        let kill = env.ctr().task_kill(id, "SIGTERM")?;
        ensure!(kill.success(), "SIGTERM to {id} ({runtime}) failed: {kill}");
    }
    std::thread::sleep(Duration::from_secs(1));
    for ((runtime, id), r) in ids.iter().zip(running.iter_mut()) {
        let status = env.ctr().task_status(id)?;
        ensure!(
            !r.has_exited() && status.as_deref() == Some("RUNNING"),
            "{runtime}: sleep as PID 1 should ignore SIGTERM, but 1 s later its ctr has \
             exited={} and the task status is {status:?}",
            r.has_exited()
        );
    }
    for ((runtime, id), r) in ids.iter().zip(running) {
        let (out, elapsed) = kill_and_wait(env, r, id, "SIGKILL")?;
        ensure!(
            out.status == Some(137),
            "{runtime}: SIGKILL should end sleep with 137 (after {elapsed:.2?}): {out}"
        );
    }
    for (_, id) in &ids {
        env.assert_no_leaks(id)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2.-4. ps, metrics, memory limit
// ---------------------------------------------------------------------------------------------

/// A long-running native and wasm workload: (name, image, args).
fn sleepers(env: &Env) -> Result<[(&'static str, &str, &'static [&'static str]); 2]> {
    Ok([
        ("native", env.busybox_image()?, &["sleep", "300"]),
        (
            "wasm",
            env.wasm_image()?,
            &["/testprog.wasm", "sleep", "300"],
        ),
    ])
}

/// `ctr task ps` lists the init pid (the PID of `ctr task ls`), a live host process whose
/// cgroups are `default/<id>`.
fn task_ps_lists_pid(env: &Env) -> Result<()> {
    env.require_shim()?;
    for (kind, image, args) in sleepers(env)? {
        let id = env.unique_id(&format!("ps-{kind}"));
        let _cleanup = Cleanup::new(env, &[&id]);
        run_detached(env, WASM_RUNTIME, &[], image, &id, args)?;
        let init = task_ls_pid(env, &id)?;
        let ps = env.ctr().task_ps(&id)?.ok()?;
        let pids = env.ctr().task_pids(&id)?;
        ensure!(
            pids == [init],
            "{kind}: `ctr task ps` should list exactly the init pid {init}: {ps}"
        );
        let proc =
            Proc::of(init).with_context(|| format!("{kind}: init pid {init} not in /proc"))?;
        ensure!(
            proc.alive(),
            "{kind}: init {} is not running",
            proc.describe()
        );
        let cgroup = std::fs::read_to_string(format!("/proc/{init}/cgroup"))
            .with_context(|| format!("reading /proc/{init}/cgroup"))?;
        let want = format!("/default/{id}");
        for controller in ["memory", "pids", "cpu"] {
            let line = cgroup.lines().find(|l| {
                let mut f = l.splitn(3, ':');
                let _ = f.next();
                f.next()
                    .is_some_and(|c| c.split(',').any(|c| c == controller))
            });
            ensure!(
                line.is_some_and(|l| l.ends_with(&format!(":{want}"))),
                "{kind}: {controller} cgroup of init {init} is not {want}:\n{cgroup}"
            );
        }
        let procs = std::fs::read_to_string(memory_cgroup(&id).join("cgroup.procs"))
            .with_context(|| format!("{kind}: reading cgroup.procs of {id}"))?;
        ensure!(
            procs.lines().any(|l| l.trim() == init.to_string()),
            "{kind}: init {init} not in {}/cgroup.procs: {procs:?}",
            memory_cgroup(&id).display()
        );
        kill_and_delete(env, &id)?;
        env.assert_no_leaks(&id)?;
    }
    Ok(())
}

/// The memory usage in `ctr task metrics --format json` (cgroup v1: `memory.usage.usage`;
/// v2: `memory.usage`).
fn json_memory_usage(metrics: &serde_json::Value) -> Option<u64> {
    let memory = metrics.get("memory")?;
    let usage = memory.get("usage")?;
    usage
        .get("usage")
        .and_then(serde_json::Value::as_u64)
        .or_else(|| usage.as_u64())
}

/// The `memory.usage_in_bytes` row of the table `ctr task metrics` prints.
fn table_memory_usage(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|line| {
        let mut cols = line.split_whitespace();
        let name = cols.next()?;
        (name == "memory.usage_in_bytes" || name == "memory.usage")
            .then(|| cols.next()?.parse().ok())?
    })
}

fn task_metrics_memory(env: &Env) -> Result<()> {
    env.require_shim()?;
    for (kind, image, args) in sleepers(env)? {
        let id = env.unique_id(&format!("metrics-{kind}"));
        let _cleanup = Cleanup::new(env, &[&id]);
        run_detached(env, WASM_RUNTIME, &[], image, &id, args)?;

        let table = env.ctr().run(&["task", "metrics", &id])?.ok()?;
        let usage = table_memory_usage(&table.stdout);
        ensure!(
            usage.is_some_and(|u| u > 0),
            "{kind}: no non-zero memory usage in `ctr task metrics`: {table}"
        );

        let json = env.ctr().task_metrics_json(&id)?;
        let usage = json_memory_usage(&json);
        ensure!(
            usage.is_some_and(|u| u > 0),
            "{kind}: no non-zero memory usage in the JSON metrics:\n{json:#}"
        );
        kill_and_delete(env, &id)?;
        env.assert_no_leaks(&id)?;
    }
    Ok(())
}

fn memory_limit_in_cgroup(env: &Env) -> Result<()> {
    env.require_shim()?;
    const LIMIT: &str = "33554432";
    for (kind, image, args) in sleepers(env)? {
        let id = env.unique_id(&format!("memlimit-{kind}"));
        let _cleanup = Cleanup::new(env, &[&id]);
        run_detached(
            env,
            WASM_RUNTIME,
            &["--memory-limit", LIMIT],
            image,
            &id,
            args,
        )?;
        let file = memory_cgroup(&id).join("memory.limit_in_bytes");
        let limit = std::fs::read_to_string(&file)
            .with_context(|| format!("{kind}: reading {}", file.display()))?;
        ensure!(
            limit.trim() == LIMIT,
            "{kind}: {} is {:?}, want {LIMIT}",
            file.display(),
            limit.trim()
        );
        kill_and_delete(env, &id)?;
        env.assert_no_leaks(&id)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. OOM
// ---------------------------------------------------------------------------------------------

/// busybox dd mallocs a 64 MiB buffer and reads /dev/zero into it in one read, which touches
/// every page; with a 16 MiB limit (and no swap) the OOM killer SIGKILLs it: 137.
fn native_memory_hog_oom_137(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    const DD: &[&str] = &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];

    // Control: without a limit the same dd completes, so a 137 below is the limit's doing.
    let free = env.unique_id("oom-control");
    let _cleanup_free = Cleanup::new(env, &[&free]);
    let out = env.ctr().run_rm(WASM_RUNTIME, image, &free, DD)?;
    ensure!(
        out.success() && out.stderr.contains("1+0 records out"),
        "without a memory limit, dd of a 64 MiB block should succeed: {out}"
    );
    env.assert_no_leaks(&free)?;

    let id = env.unique_id("oom");
    let _cleanup = Cleanup::new(env, &[&id]);
    let out = env.ctr().run_rm_flags(
        WASM_RUNTIME,
        &["--memory-limit", "16777216"],
        image,
        &id,
        DD,
    )?;
    ensure!(
        out.status == Some(137),
        "a 64 MiB allocation under a 16 MiB limit should be OOM-killed (137): {out}"
    );
    env.assert_no_leaks(&id)
}

// ---------------------------------------------------------------------------------------------
// 6. Deletion
// ---------------------------------------------------------------------------------------------

fn delete_leaves_nothing(env: &Env) -> Result<()> {
    env.require_shim()?;
    for (kind, image, args) in sleepers(env)? {
        let id = env.unique_id(&format!("delete-{kind}"));
        let _cleanup = Cleanup::new(env, &[&id]);
        run_detached(env, WASM_RUNTIME, &[], image, &id, args)?;
        let init = task_ls_pid(env, &id)?;
        let init = Proc::of(init).with_context(|| format!("{kind}: init {init} not in /proc"))?;
        let (daemon, family) = daemon_of(env, &id)?;
        let socket = leaks::shim_socket_for(env.containerd().address(), "default", &id);
        // The checks below must be able to see the running container.
        ensure!(
            state_dir(&id).is_dir()
                && socket.exists()
                && !leaks::cgroup_dirs(&id).is_empty()
                && !leaks::mounts_containing(&id).is_empty()
                && !leaks::processes_matching(&id).is_empty(),
            "{kind}: running container {id} not visible: state dir {} exists: {}, {:#?}",
            state_dir(&id).display(),
            state_dir(&id).exists(),
            leaks::leaks_for(env.containerd().address(), &id)
        );

        env.ctr().task_kill(&id, "SIGKILL")?.ok()?;
        wait_status(env, &id, "STOPPED", Duration::from_secs(10))?;
        env.ctr().task_delete(&id)?.ok()?;
        env.ctr().container_delete(&id)?.ok()?;

        env.assert_no_leaks(&id)
            .with_context(|| format!("{kind}: after kill + delete"))?;
        ensure!(
            !init.alive(),
            "{kind}: init still alive: {}",
            init.describe()
        );
        let left: Vec<String> = family
            .iter()
            .filter(|p| p.proc.alive())
            .map(|p| p.proc.describe())
            .collect();
        ensure!(
            left.is_empty(),
            "{kind}: shim daemon {} or its processes still alive: {left:#?}",
            daemon.proc.pid
        );
        ensure!(
            !state_dir(&id).exists(),
            "{kind}: state dir {} still exists",
            state_dir(&id).display()
        );
        ensure!(
            !socket.exists(),
            "{kind}: shim socket {} still exists",
            socket.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 7. Many containers, one shim
// ---------------------------------------------------------------------------------------------

/// 20 `ctr run --rm` started at once in one pod (so one shim), half wasm, half native: every
/// one prints its own word and exits 0, one daemon served them all, and nothing is left.
fn twenty_concurrent_containers_one_shim(env: &Env) -> Result<()> {
    env.require_shim()?;
    let wasm_image = env.wasm_image()?;
    let native_image = env.busybox_image()?;
    let pod = env.unique_id("pod");
    let annotation = format!("{SANDBOX_ID}={pod}");
    let jobs: Vec<(String, String, bool)> = (0..20)
        .map(|n| {
            let wasm = n % 2 == 0;
            let kind = if wasm { "wasm" } else { "native" };
            let id = env.unique_id(&format!("pod-{kind}-{n}"));
            let word = format!("word-{n}-{}", std::process::id());
            (id, word, wasm)
        })
        .collect();
    let ids: Vec<&str> = jobs.iter().map(|(id, ..)| id.as_str()).collect();
    let _cleanup = Cleanup::new(env, &ids);
    let (group_path, group_url) = group_socket(env, &pod);
    // 20 containers on 2 cores: each ctr may wait for the others.
    let ctr = env.ctr().clone().with_timeout(Duration::from_secs(120));

    let done = AtomicBool::new(false);
    let (outputs, seen) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut seen: BTreeMap<Proc, ShimProc> = BTreeMap::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let procs: Vec<ShimProc> = shim_processes(env)
                    .into_iter()
                    .filter(|p| ids.contains(&p.id.as_str()) || p.socket == group_url)
                    .collect();
                for d in daemons(&procs) {
                    seen.entry(d.proc).or_insert(d);
                }
                if finished {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let workers: Vec<_> = jobs
            .iter()
            .map(|(id, word, wasm)| {
                let (ctr, annotation) = (&ctr, &annotation);
                scope.spawn(move || {
                    let flags = ["--annotation", annotation.as_str()];
                    if *wasm {
                        ctr.run_rm_flags(
                            WASM_RUNTIME,
                            &flags,
                            wasm_image,
                            id,
                            &["/hello.wasm", word],
                        )
                    } else {
                        ctr.run_rm_flags(WASM_RUNTIME, &flags, native_image, id, &["echo", word])
                    }
                })
            })
            .collect();
        let outputs: Vec<Result<CmdOutput>> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
            })
            .collect();
        done.store(true, Ordering::SeqCst);
        let seen = sampler.join().unwrap_or_default();
        (outputs, seen)
    });

    let mut failures = Vec::new();
    for ((id, word, wasm), out) in jobs.iter().zip(outputs) {
        match out {
            Err(e) => failures.push(format!("{id}: {e:#}")),
            Ok(out) => {
                let printed = if *wasm {
                    out.stdout.lines().any(|l| l == format!("arg[1]={word}"))
                } else {
                    out.stdout == format!("{word}\n")
                };
                let foreign = jobs.iter().any(|(_, other, _)| {
                    other != word && out.stdout.contains(&format!("{other}\n"))
                });
                if !out.success() || !printed || foreign {
                    failures.push(format!("{id} should print {word:?} and exit 0: {out}"));
                }
            }
        }
    }
    let daemons: Vec<&ShimProc> = seen.values().collect();
    let one_daemon = daemons.len() == 1 && daemons[0].socket == group_url;
    ensure!(
        failures.is_empty() && one_daemon,
        "{} of 20 containers failed:\n{}\n\nshim daemons seen during the run (want exactly one, \
         on the group socket {group_url}): {daemons:#?}",
        failures.len(),
        failures.join("\n"),
    );
    let daemon = daemons[0].proc;
    for id in &ids {
        env.assert_no_leaks(id)?;
    }
    ensure!(
        wait_until(Duration::from_secs(10), || !daemon.alive()),
        "the pod's shim daemon is still alive after all its containers were removed: {}",
        daemon.describe()
    );
    ensure!(
        !group_path.exists(),
        "the pod's shim socket {} still exists",
        group_path.display()
    );
    Ok(())
}

/// The daemon of a pod is spawned by the `start` of the pod's first container (with that
/// container's bundle as its working directory). Deleting that container while another one
/// keeps the shim alive must not break later creates in the same pod.
fn pod_shim_serves_after_first_container_deleted(env: &Env) -> Result<()> {
    env.require_shim()?;
    let wasm_image = env.wasm_image()?;
    let native_image = env.busybox_image()?;
    let pod = env.unique_id("pod-first");
    let annotation = format!("{SANDBOX_ID}={pod}");
    let flags = ["--annotation", annotation.as_str()];
    let first = env.unique_id("pod-first-native");
    let second = env.unique_id("pod-first-wasm");
    let later_native = env.unique_id("pod-later-native");
    let later_wasm = env.unique_id("pod-later-wasm");
    let ids = [&first, &second, &later_native, &later_wasm].map(String::as_str);
    let _cleanup = Cleanup::new(env, &ids);
    let (_, group_url) = group_socket(env, &pod);

    run_detached(
        env,
        WASM_RUNTIME,
        &flags,
        native_image,
        &first,
        &["sleep", "300"],
    )?;
    let (daemon, _) = daemon_of(env, &first)?;
    ensure!(
        daemon.socket == group_url,
        "the pod's shim listens on {}, want {group_url}",
        daemon.socket
    );
    run_detached(
        env,
        WASM_RUNTIME,
        &flags,
        wasm_image,
        &second,
        &["/testprog.wasm", "sleep", "300"],
    )?;
    kill_and_delete(env, &first)?;
    ensure!(
        daemon.proc.alive(),
        "the pod's shim exited although {second} still runs in it"
    );

    let ctr = env.ctr();
    let native = ctr.run_rm_flags(
        WASM_RUNTIME,
        &flags,
        native_image,
        &later_native,
        &["echo", "after"],
    )?;
    let wasm = ctr.run_rm_flags(
        WASM_RUNTIME,
        &flags,
        wasm_image,
        &later_wasm,
        &["/hello.wasm", "after"],
    )?;
    ensure!(
        native.success()
            && native.stdout == "after\n"
            && wasm.success()
            && wasm.stdout.lines().any(|l| l == "arg[1]=after"),
        "after the pod's first container {first} was deleted, new containers in the pod \
         fail (the shim's working directory was {first}'s bundle: {:?}):\n{native}\n{wasm}",
        std::fs::read_link(format!("/proc/{}/cwd", daemon.proc.pid)).ok()
    );
    kill_and_delete(env, &second)?;
    for id in ids {
        env.assert_no_leaks(id)?;
    }
    ensure!(
        wait_until(Duration::from_secs(10), || !daemon.proc.alive()),
        "the pod's shim is still alive after all its containers were removed: {}",
        daemon.proc.describe()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 8. A killed shim
// ---------------------------------------------------------------------------------------------

fn shim_killed_then_containerd_cleans_up(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    shim_killed_case(env, "shim-killed-native", image, &["sleep", "300"])
}

fn shim_killed_then_containerd_cleans_up_wasm(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    shim_killed_case(
        env,
        "shim-killed-wasm",
        image,
        &["/testprog.wasm", "sleep", "300"],
    )
}

/// SIGKILLs the shim daemon of a running container. containerd notices the closed ttrpc
/// connection and runs the shim binary's `delete` action, which must kill the container and
/// remove its cgroup, mounts and state; the socket of the dead shim must go too.
fn shim_killed_case(env: &Env, name: &str, image: &str, args: &[&str]) -> Result<()> {
    let id = env.unique_id(name);
    let _cleanup = Cleanup::new(env, &[&id]);
    run_detached(env, WASM_RUNTIME, &[], image, &id, args)?;
    let init = task_ls_pid(env, &id)?;
    let init = Proc::of(init).with_context(|| format!("init {init} not in /proc"))?;
    let (daemon, family) = daemon_of(env, &id)?;
    let socket = leaks::shim_socket_for(env.containerd().address(), "default", &id);
    ensure!(
        state_dir(&id).is_dir() && socket.exists(),
        "running container {id}: state dir {} or socket {} missing",
        state_dir(&id).display(),
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
        status = env.ctr().task_status(&id).ok();
        matches!(status.as_ref(), Some(None))
            || matches!(status, Some(Some(ref s)) if s == "STOPPED")
    });
    ensure!(
        noticed,
        "10 s after the shim was killed, task {id} is still {status:?} (want STOPPED or gone)"
    );
    // The task may already be gone (containerd cleaned up after the dead shim).
    let task_delete = env.ctr().task_delete(&id)?;
    let container_delete = env.ctr().container_delete(&id)?;
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
    wait_until(Duration::from_secs(10), || {
        family.iter().all(|p| !p.proc.alive())
    });
    for p in family.iter().filter(|p| p.proc.alive()) {
        problems.push(format!("shim process still alive: {}", p.proc.describe()));
    }
    let mut left = Vec::new();
    wait_until(Duration::from_secs(10), || {
        left = leaks::leaks_for(env.containerd().address(), &id);
        left.is_empty()
    });
    problems.extend(left);
    if state_dir(&id).exists() {
        problems.push(format!("state dir {}", state_dir(&id).display()));
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
