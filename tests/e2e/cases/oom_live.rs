//! `TaskOOM` as it happens: a native container whose child is OOM-killed while its shell lives
//! on is reported within a second, before the container ends, and each kill once (also the
//! kill of the init, which the shim learns both live and at the exit).
//!
//! The watcher is shim code that does not depend on the engine and these containers are
//! native, so one engine's run covers it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::{container_config, with_memory_limit};
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::events::EventStream;
use wasmpod_e2e::leaks::wait_until;
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE};

use crate::cri_support::{read_log, remove_and_assert_gone, wait_state};
use crate::support::{kill_and_delete, memory_cgroup, run_detached, Cleanup, START_TIMEOUT};

pub fn cases() -> Vec<Case> {
    cases![only_on(&["wasmtime"]):
        native_child_oom_kill_is_published_while_the_container_runs,
        native_init_oom_kill_is_published_once_before_the_exit,
        cri_container_whose_child_is_oom_killed_keeps_running,
    ]
}

/// 32 MiB: room for busybox's shell, not for dd's 64 MiB buffer.
const LIMIT: &str = "33554432";
/// A shell that outlives its OOM-killed dd.
const SURVIVOR: &str = "dd if=/dev/zero of=/dev/null bs=64M count=1; echo survived; exec sleep 600";
/// How soon after the kill TaskOOM must reach containerd.
const WITHIN: Duration = Duration::from_secs(1);

/// The `oom_kill` count of a v1 memory cgroup (0 when unreadable).
fn oom_kills(cgroup: &Path) -> u64 {
    std::fs::read_to_string(cgroup.join("memory.oom_control"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn count(topics: &[String], topic: &str) -> usize {
    topics.iter().filter(|t| *t == topic).count()
}

/// `sh -c 'dd ...; sleep'` under a 32 MiB limit: dd is OOM-killed, the shell (the init) runs
/// on. `/tasks/oom` arrives within [`WITHIN`] of the kernel's count growing, while `ctr task ls`
/// says RUNNING; killing the container later publishes its exit and no second OOM.
fn native_child_oom_kill_is_published_while_the_container_runs(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let events = EventStream::start(env.ctr(), Duration::from_millis(500))?;
    let id = env.unique_id("oom-live");
    let _cleanup = Cleanup::new(env, &[&id]);
    run_detached(
        env,
        &env.runtime(),
        &["--memory-limit", LIMIT],
        image,
        &id,
        &["sh", "-c", SURVIVOR],
    )?;
    let cgroup = memory_cgroup(&id);
    let mut killed_at = None;
    let killed = wait_until(START_TIMEOUT, || {
        let now = Instant::now();
        (oom_kills(&cgroup) > 0)
            .then(|| killed_at = Some(now))
            .is_some()
    });
    ensure!(killed, "dd in {id} was not OOM-killed in {START_TIMEOUT:?}");
    let killed_at = killed_at.context("no kill time")?;

    let oom = events
        .wait_for(&id, "/tasks/oom", Duration::from_secs(5))
        .with_context(|| format!("no /tasks/oom for {id}: {:?}", events.topics_of(&id)))?;
    let late = oom.seen.saturating_duration_since(killed_at);
    ensure!(
        late < WITHIN,
        "/tasks/oom for {id} came {late:?} after the kill"
    );
    let status = env.ctr().task_status(&id)?;
    ensure!(
        status.as_deref() == Some("RUNNING"),
        "{id} should run on after its child's OOM kill: {status:?}"
    );
    let topics = events.topics_of(&id);
    ensure!(
        !topics.iter().any(|t| t == "/tasks/exit"),
        "{id} exited before its OOM was checked: {topics:?}"
    );

    kill_and_delete(env, &id)?;
    ensure!(
        events
            .wait_for(&id, "/tasks/delete", Duration::from_secs(5))
            .is_some(),
        "no /tasks/delete for {id}: {:?}",
        events.topics_of(&id)
    );
    let topics = events.topics_of(&id);
    ensure!(
        count(&topics, "/tasks/oom") == 1 && count(&topics, "/tasks/exit") == 1,
        "{id}: want one /tasks/oom (live) and one /tasks/exit, got {topics:?}"
    );
    env.assert_no_leaks(&id)
}

/// The init itself (dd) is OOM-killed: the watcher and the exit path both see the kill, and
/// exactly one `/tasks/oom` is published, before `/tasks/exit` (so CRI has the reason when it
/// records the exit). Several containers, so the race between the two goes both ways.
fn native_init_oom_kill_is_published_once_before_the_exit(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let events = EventStream::start(env.ctr(), Duration::from_millis(500))?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = env.unique_id("oom-init");
        let _cleanup = Cleanup::new(env, &[&id]);
        let out = env.ctr().run_rm_flags(
            &env.runtime(),
            &["--memory-limit", LIMIT],
            image,
            &id,
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        )?;
        ensure!(out.status == Some(137), "dd should be OOM-killed: {out}");
        ids.push(id);
    }
    for id in &ids {
        ensure!(
            events
                .wait_for(id, "/tasks/delete", Duration::from_secs(5))
                .is_some(),
            "no /tasks/delete for {id}: {:?}",
            events.topics_of(id)
        );
        // A late duplicate would come within the watcher's re-reads (under a second).
        std::thread::sleep(Duration::from_millis(100));
        let topics = events.topics_of(id);
        let oom = topics.iter().position(|t| t == "/tasks/oom");
        let exit = topics.iter().position(|t| t == "/tasks/exit");
        ensure!(
            count(&topics, "/tasks/oom") == 1 && oom < exit,
            "{id}: want exactly one /tasks/oom, before /tasks/exit; got {topics:?}"
        );
        env.assert_no_leaks(id)?;
    }
    std::thread::sleep(WITHIN);
    for id in &ids {
        let topics = events.topics_of(id);
        ensure!(
            count(&topics, "/tasks/oom") == 1,
            "{id}: a second /tasks/oom came late: {topics:?}"
        );
    }
    Ok(())
}

/// Through CRI: a container whose child is OOM-killed keeps running (its log says so), and
/// ContainerStatus shows the reason `OOMKilled` while it is RUNNING, from the live TaskOOM.
fn cri_container_whose_child_is_oom_killed_keeps_running(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "oom-live", env.cri_handler(), &env.pod_logs_root())?;
    let survivor = pod.start(&with_memory_limit(
        container_config("survivor", BUSYBOX_IMAGE, &["sh", "-c", SURVIVOR]),
        32 << 20,
    ))?;
    read_log(&pod.log_path("survivor"), "survived")?;
    let mut last = None;
    let reported = wait_until(Duration::from_secs(5), || {
        let status = cri.container_status(&survivor).ok();
        let seen = status.as_ref().is_some_and(|s| s.reason == "OOMKilled");
        last = status;
        seen
    });
    ensure!(
        reported,
        "{survivor}: no OOMKilled reason while it runs; last status {last:?}"
    );
    let status = wait_state(cri, &survivor, ContainerState::ContainerRunning)?;
    ensure!(
        status.reason == "OOMKilled",
        "{survivor}: status {status:?}"
    );
    remove_and_assert_gone(env, &mut pod, &[&survivor])
}
