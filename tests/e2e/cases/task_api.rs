//! The shim's task API driven directly (no containerd in between, see
//! `wasmpod_e2e::shim_api`): each kind of failure has the status code runc's shim gives it,
//! also when it comes back from the zygote; two `Create`s of one id at once leave exactly one
//! container, untouched by the loser; and a zygote killed under running containers is
//! replaced while they keep running and still report their exits.

use std::path::Path;
use std::sync::Barrier;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use containerd_shim_protos::api;
use containerd_shim_protos::ttrpc::Code;
use wasmpod_e2e::leaks::{self, wait_until};
use wasmpod_e2e::shim_api::{
    children_of, code_of, expect_code, message_of, ApiResult, Bundle, DirectShim, NAMESPACE,
};
use wasmpod_e2e::{cases, events, Case, Env};

pub fn cases() -> Vec<Case> {
    cases![
        task_api_error_codes,
        task_api_unavailable_when_containerd_is_unreachable,
        task_api_concurrent_creates_of_one_id,
        task_api_zygote_killed_is_replaced,
        task_api_two_hundred_quick_guests_events_in_order,
        task_api_quick_execs_started_before_their_exit,
    ]
}

/// A module whose only function is `_start` (no other function an entry point could name),
/// with the memory every engine's WASI wants exported.
const MODULE: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;
/// `RUNNING` in the task API's status enum.
const RUNNING: api::Status = api::Status::RUNNING;

fn state_dir(id: &str) -> std::path::PathBuf {
    Path::new("/run/wasmpod").join(NAMESPACE).join(id)
}

/// Nothing of a refused `Create` is left: no state directory, no cgroup.
fn ensure_nothing_left(id: &str) -> Result<()> {
    let left: Vec<String> = leaks::cgroup_dirs(id)
        .into_iter()
        .map(|d| d.display().to_string())
        .chain(
            state_dir(id)
                .exists()
                .then(|| state_dir(id).display().to_string()),
        )
        .collect();
    ensure!(
        left.is_empty(),
        "a refused Create of {id} left {}",
        left.join(", ")
    );
    Ok(())
}

/// One case of each status code the shim answers with, through the task API: unknown task
/// (NOT_FOUND), an existing id (ALREADY_EXISTS), a second Start (FAILED_PRECONDITION), a
/// module without the entry point's export, refused in the zygote (INVALID_ARGUMENT), stdout
/// that cannot be opened, failing in the zygote's worker (INTERNAL), and Checkpoint
/// (UNIMPLEMENTED). The failed Creates leave nothing behind.
fn task_api_error_codes(env: &Env) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id("codes");
    let bundle = Bundle::new(env, &id, &["/bin/busybox", "sleep", "300"])?;
    let shim = DirectShim::start(env, &bundle, &id)?;

    expect_code(
        "State of an unknown task",
        shim.state(&env.unique_id("no-such-task")),
        Code::NOT_FOUND,
    )?;

    let bad_module = env.unique_id("codes-no-export");
    let wasm = Bundle::new(env, &bad_module, &["/m.wat#nope"])?;
    wasm.write("m.wat", MODULE.as_bytes())?;
    let message = expect_code(
        "Create of a module without the named export",
        shim.create(&bad_module, &wasm),
        Code::INVALID_ARGUMENT,
    )?;
    ensure!(
        message.contains("export `nope` not found"),
        "the message lost its cause: {message}"
    );
    ensure_nothing_left(&bad_module)?;

    let no_stdout = env.unique_id("codes-no-stdout");
    let native = Bundle::new(env, &no_stdout, &["/bin/busybox", "true"])?;
    let missing = native.path().join("no-such-dir/stdout");
    let message = expect_code(
        "Create with a stdout that cannot be opened",
        shim.create_with(&no_stdout, &native, |r| {
            r.stdout = missing.display().to_string()
        }),
        Code::INTERNAL,
    )?;
    ensure!(
        message.contains("no-such-dir"),
        "the message does not name the stdout path: {message}"
    );
    ensure_nothing_left(&no_stdout)?;

    shim.create(&id, &bundle).api("Create")?;
    expect_code(
        "a second Create of the same id",
        shim.create(&id, &bundle),
        Code::ALREADY_EXISTS,
    )?;
    shim.start_task(&id).api("Start")?;
    expect_code(
        "Start of a running task",
        shim.start_task(&id),
        Code::FAILED_PRECONDITION,
    )?;
    let checkpoint = api::CheckpointTaskRequest {
        id: id.clone(),
        path: env
            .containerd()
            .base()
            .join("checkpoint")
            .display()
            .to_string(),
        ..Default::default()
    };
    expect_code(
        "Checkpoint",
        shim.client().checkpoint(ctx(), &checkpoint).map(|_| ()),
        Code::UNIMPLEMENTED,
    )?;
    let state = shim.state(&id).api("State")?;
    ensure!(
        state.status.enum_value() == Ok(RUNNING),
        "the failed calls disturbed the task: {state:?}"
    );
    Ok(())
}

fn ctx() -> containerd_shim_protos::ttrpc::context::Context {
    containerd_shim_protos::ttrpc::context::with_timeout(Duration::from_secs(60).as_nanos() as i64)
}

/// A shim whose containerd cannot be reached (to read the container's image) answers Create
/// with UNAVAILABLE: a retry may work, unlike a bad spec.
fn task_api_unavailable_when_containerd_is_unreachable(env: &Env) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id("unreachable");
    let bundle = Bundle::new(env, &id, &["/bin/busybox", "true"])?;
    let nowhere = env.containerd().base().join("no-containerd.sock");
    let shim =
        DirectShim::start_with_containerd(env, &bundle, &id, &nowhere.display().to_string())?;
    let message = expect_code(
        "Create while containerd is unreachable",
        shim.create(&id, &bundle),
        Code::UNAVAILABLE,
    )?;
    ensure!(
        message.contains("cannot reach containerd"),
        "the message lost its cause: {message}"
    );
    ensure_nothing_left(&id)
}

/// Rounds of four `Create`s of one id at once, each with a bundle of its own: exactly one
/// wins, the others fail ALREADY_EXISTS, and the winner's container is whole: it starts, runs,
/// and its kill is reported as its exit.
fn task_api_concurrent_creates_of_one_id(env: &Env) -> Result<()> {
    const RACERS: usize = 4;
    const ROUNDS: usize = 3;
    env.require_shim()?;
    let group = env.unique_id("race-group");
    let first = Bundle::new(env, &group, &["/bin/busybox", "true"])?;
    let shim = DirectShim::start(env, &first, &group)?;
    for round in 0..ROUNDS {
        let id = env.unique_id(&format!("race-{round}"));
        let bundles = (0..RACERS)
            .map(|_| Bundle::new(env, &id, &["/bin/busybox", "sleep", "300"]))
            .collect::<Result<Vec<_>>>()?;
        let barrier = Barrier::new(RACERS);
        let results: Vec<_> = std::thread::scope(|scope| {
            let racers: Vec<_> = bundles
                .iter()
                .map(|bundle| {
                    let (shim, barrier, id) = (&shim, &barrier, &id);
                    scope.spawn(move || {
                        barrier.wait();
                        shim.create(id, bundle)
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().map_err(|_| anyhow::anyhow!("racer panicked")))
                .collect()
        });
        let mut winners = Vec::new();
        for result in results {
            match result? {
                Ok(pid) => winners.push(pid),
                Err(e) if code_of(&e) == Some(Code::ALREADY_EXISTS) => {}
                Err(e) => bail!(
                    "round {round}: a losing Create must fail ALREADY_EXISTS, got {:?}: {}",
                    code_of(&e),
                    message_of(&e)
                ),
            }
        }
        ensure!(
            winners.len() == 1,
            "round {round}: {} of {RACERS} concurrent Creates of {id} succeeded",
            winners.len()
        );
        let pid = winners[0];
        ensure!(
            state_dir(&id).join("state.json").exists(),
            "round {round}: the winner's state is gone"
        );
        shim.start_task(&id)
            .api(&format!("round {round}: Start of the winner"))?;
        std::thread::sleep(Duration::from_millis(200));
        let state = shim.state(&id).api("State")?;
        ensure!(
            state.status.enum_value() == Ok(RUNNING) && state.pid == pid,
            "round {round}: the winner (pid {pid}) should run: {state:?}"
        );
        ensure!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "round {round}: the winner's init {pid} is gone"
        );
        shim.kill(&id, libc::SIGKILL as u32).api("Kill")?;
        let code = shim.wait(&id).api("Wait")?;
        ensure!(
            code == 137,
            "round {round}: the winner's exit was {code}, not 137"
        );
        shim.delete(&id).api("Delete")?;
        ensure_nothing_left(&id)?;
    }
    Ok(())
}

/// SIGKILL the zygote while a container runs: the container keeps running, the next Create
/// (a wasm module, which the zygote loads) gets a fresh zygote — the shim binary executed
/// again, with a clean environment — and succeeds, and the first container's kill is still
/// reported as its exit.
fn task_api_zygote_killed_is_replaced(env: &Env) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id("zygote-kill");
    let bundle = Bundle::new(env, &id, &["/bin/busybox", "sleep", "300"])?;
    let shim = DirectShim::start(env, &bundle, &id)?;
    let running = shim.create(&id, &bundle).api("Create")?;
    shim.start_task(&id).api("Start")?;

    let zygote = the_zygote(&shim, &[running])?;
    // SAFETY: a signal to the process just identified as this shim's zygote.
    ensure!(
        unsafe { libc::kill(zygote as i32, libc::SIGKILL) } == 0,
        "kill {zygote}: {}",
        std::io::Error::last_os_error()
    );
    ensure!(
        wait_until(Duration::from_secs(5), || !children_of(shim.pid())
            .contains(&zygote)),
        "the killed zygote {zygote} was not reaped"
    );
    std::thread::sleep(Duration::from_millis(200));
    let state = shim.state(&id).api("State")?;
    ensure!(
        state.status.enum_value() == Ok(RUNNING) && Path::new(&format!("/proc/{running}")).exists(),
        "the container must outlive its zygote: {state:?}"
    );

    let next = env.unique_id("after-zygote");
    let wasm = Bundle::new(env, &next, &["/m.wat"])?;
    wasm.write("m.wat", MODULE.as_bytes())?;
    let stderr = wasm.path().join("stderr");
    std::fs::write(&stderr, b"")?;
    let guest_stderr = || std::fs::read_to_string(&stderr).unwrap_or_default();
    shim.create_with(&next, &wasm, |r| r.stderr = stderr.display().to_string())
        .map_err(|e| {
            anyhow::anyhow!(
                "Create after the zygote died: {:?}: {}\nshim log:\n{}",
                code_of(&e),
                message_of(&e),
                shim.log()
            )
        })?;
    shim.start_task(&next).api("Start after the zygote died")?;
    let code = shim.wait(&next).api("Wait")?;
    ensure!(
        code == 0,
        "the module created by the fresh zygote exited {code}; its stderr: {}; shim log:\n{}",
        guest_stderr(),
        shim.log()
    );

    let fresh = the_zygote(&shim, &[running])?;
    let cmdline = leaks::cmdline(fresh).unwrap_or_default();
    ensure!(
        fresh != zygote && cmdline.contains("--wasmpod-zygote"),
        "the fresh zygote should be the shim binary in zygote mode: pid {fresh}: {cmdline}"
    );
    let environ = std::fs::read(format!("/proc/{fresh}/environ")).context("zygote environ")?;
    ensure!(
        environ.is_empty(),
        "the fresh zygote's environment should be clean: {:?}",
        String::from_utf8_lossy(&environ)
    );
    // The shim's threads block SIGCHLD, SIGTERM and SIGINT; its zygote and their containers
    // must not inherit that mask (a container would ignore `kill -TERM` forever).
    let third = env.unique_id("after-zygote-native");
    let native = Bundle::new(env, &third, &["/bin/busybox", "sleep", "300"])?;
    let third_pid = shim.create(&third, &native).api("Create")?;
    for pid in [fresh, third_pid] {
        let blocked = blocked_signals(pid)?;
        ensure!(
            blocked == 0,
            "process {pid} made by the fresh zygote blocks signals {blocked:#x}"
        );
    }

    let log = shim.log();
    ensure!(
        log.contains("the zygote ended") && log.contains("started a fresh one"),
        "the shim did not log the zygote's end and its replacement:\n{log}"
    );

    shim.kill(&id, libc::SIGKILL as u32).api("Kill")?;
    let code = shim.wait(&id).api("Wait")?;
    ensure!(
        code == 137,
        "the first container's exit was {code}, not 137"
    );
    Ok(())
}

/// The shim's only child that is not one of the `containers`' inits.
fn the_zygote(shim: &DirectShim, containers: &[u32]) -> Result<u32> {
    let others: Vec<u32> = children_of(shim.pid())
        .into_iter()
        .filter(|pid| !containers.contains(pid))
        .collect();
    match others.as_slice() {
        [zygote] => Ok(*zygote),
        _ => bail!(
            "expected one zygote among the children of shim {}, found {others:?}",
            shim.pid()
        ),
    }
}

/// 200 containers whose guest ends at once (half wasm, half native), created, started, waited
/// for and deleted by 4 clients at a time in one shim: `ctr events` sees each one's TaskCreate,
/// TaskStart, TaskExit and TaskDelete, once each and in that order.
fn task_api_two_hundred_quick_guests_events_in_order(env: &Env) -> Result<()> {
    const CONTAINERS: usize = 200;
    const CLIENTS: usize = 4;
    env.require_shim()?;
    let group = env.unique_id("quick-group");
    let first = Bundle::new(env, &group, &["/bin/busybox", "true"])?;
    let shim = DirectShim::start(env, &first, &group)?;
    let mut events = env.ctr().spawn(&["events"], false)?;
    // `ctr events` subscribes asynchronously; give it a moment before the first container.
    std::thread::sleep(Duration::from_millis(500));
    let ids: Vec<String> = (0..CONTAINERS)
        .map(|n| env.unique_id(&format!("quick-{n}")))
        .collect();
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let clients: Vec<_> = ids
            .chunks(CONTAINERS / CLIENTS)
            .enumerate()
            .map(|(client, chunk)| {
                let shim = &shim;
                scope.spawn(move || -> Result<()> {
                    for (n, id) in chunk.iter().enumerate() {
                        let wasm = (client + n) % 2 == 0;
                        let args: &[&str] = if wasm {
                            &["/m.wat"]
                        } else {
                            &["/bin/busybox", "true"]
                        };
                        let bundle = Bundle::new(env, id, args)?;
                        bundle.write("m.wat", MODULE.as_bytes())?;
                        let call = |what: &str, e: containerd_shim_protos::ttrpc::Error| {
                            anyhow::anyhow!("{id}: {what}: {:?}: {}", code_of(&e), message_of(&e))
                        };
                        shim.create(id, &bundle).map_err(|e| call("Create", e))?;
                        shim.start_task(id).map_err(|e| call("Start", e))?;
                        let code = shim.wait(id).map_err(|e| call("Wait", e))?;
                        ensure!(code == 0, "{id} exited {code}");
                        shim.delete(id).map_err(|e| call("Delete", e))?;
                    }
                    Ok(())
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap_or_else(|_| bail!("client panicked")))
            .collect()
    });
    std::thread::sleep(Duration::from_millis(500));
    events.kill();
    let out = events.wait(Duration::from_secs(5))?;
    for result in results {
        result?;
    }
    let mut failures = Vec::new();
    for id in &ids {
        let ours = events::lines_of(&out.stdout, id);
        if let Err(e) = crate::spec_features::ensure_lifecycle_order(id, &ours) {
            failures.push(format!("{e:#}"));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {CONTAINERS} containers: {}",
        failures.len(),
        failures.join("; ")
    );
    Ok(())
}

/// `SigBlk` of `/proc/PID/status`: the blocked signals' mask.
fn blocked_signals(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .with_context(|| format!("no SigBlk in /proc/{pid}/status"))?;
    u64::from_str_radix(mask.trim(), 16).with_context(|| format!("SigBlk {mask:?}"))
}

/// 50 execs that end at once in a running container: for each, `ctr events` sees
/// TaskExecAdded, TaskExecStarted, then its TaskExit, once each.
fn task_api_quick_execs_started_before_their_exit(env: &Env) -> Result<()> {
    const EXECS: usize = 50;
    env.require_shim()?;
    let id = env.unique_id("quick-execs");
    let bundle = Bundle::new(env, &id, &["/bin/busybox", "sleep", "300"])?;
    let shim = DirectShim::start(env, &bundle, &id)?;
    shim.create(&id, &bundle).api("Create")?;
    shim.start_task(&id).api("Start")?;
    let mut events = env.ctr().spawn(&["events"], false)?;
    std::thread::sleep(Duration::from_millis(500));
    let exec_ids: Vec<String> = (0..EXECS)
        .map(|n| env.unique_id(&format!("quick-exec-{n}")))
        .collect();
    let mut failures = Vec::new();
    for exec_id in &exec_ids {
        let call = |what: &str, e: containerd_shim_protos::ttrpc::Error| {
            format!("{exec_id}: {what}: {:?}: {}", code_of(&e), message_of(&e))
        };
        let ran = shim
            .exec(&id, exec_id, &["/bin/busybox", "true"])
            .map_err(|e| call("Exec/Start", e))
            .and_then(|_| {
                shim.wait_and_delete_exec(&id, exec_id)
                    .map_err(|e| call("Wait/Delete", e))
            });
        match ran {
            Ok(0) => {}
            Ok(code) => failures.push(format!("{exec_id} exited {code}")),
            Err(e) => failures.push(e),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    events.kill();
    let out = events.wait(Duration::from_secs(5))?;
    const ORDER: [&str; 3] = ["/tasks/exec-added ", "/tasks/exec-started ", "/tasks/exit "];
    for exec_id in &exec_ids {
        let seen: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains(&format!("\"{exec_id}\"")))
            .filter_map(|l| ORDER.iter().copied().find(|t| l.contains(t)))
            .collect();
        if seen != ORDER {
            failures.push(format!(
                "{exec_id}: events came as {seen:?}, want {ORDER:?}"
            ));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} failures among {EXECS} execs: {}",
        failures.len(),
        failures.join("; ")
    );
    Ok(())
}
