//! What containerd and the OCI spec see of a container beyond its output: task events, and
//! seccomp (the spec's filter for both kinds, plus wasmpod's own filter for wasm guests).

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_e2e::leaks::wait_until;
use wasmpod_e2e::{cases, events, Case, Env};

use crate::support::{kill_and_delete, run_detached, task_ls_pid, wait_status, Cleanup};

pub fn cases() -> Vec<Case> {
    cases![
        task_events_published,
        task_start_precedes_exit_for_guests_that_end_at_once,
        seccomp_from_spec_and_guest_profile
    ]
}

/// TaskCreate, TaskStart, TaskExit (with the exit status) and TaskDelete reach containerd.
fn task_events_published(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("events");
    let mut events = env.ctr().spawn(&["events"], false)?;
    // `ctr events` subscribes asynchronously; give it a moment before the container starts.
    std::thread::sleep(Duration::from_millis(500));
    let run = env
        .ctr()
        .run_rm(&env.runtime(), image, &id, &["/testprog.wasm", "exit", "3"])?
        .expect_code(3)?;
    std::thread::sleep(Duration::from_millis(500));
    events.kill();
    let out = events.wait(Duration::from_secs(5))?;
    let ours = events::lines_of(&out.stdout, &id);
    for topic in [
        "/tasks/create ",
        "/tasks/start ",
        "/tasks/exit ",
        "/tasks/delete ",
    ] {
        ensure!(
            ours.iter().any(|l| l.contains(topic)),
            "no {topic}event for {id}; events:\n{}\nrun: {run}",
            out.stdout
        );
    }
    ensure!(
        ours.iter()
            .any(|l| l.contains("/tasks/exit ") && l.contains("\"exit_status\":3")),
        "TaskExit lacks exit_status 3: {ours:#?}"
    );
    ensure_lifecycle_order(&id, &ours)?;
    env.assert_no_leaks(&id)
}

/// The task topics in the order a container goes through them.
const LIFECYCLE: [&str; 4] = [
    "/tasks/create ",
    "/tasks/start ",
    "/tasks/exit ",
    "/tasks/delete ",
];

/// Fails unless each of [`LIFECYCLE`]'s events of `id` comes once, in that order.
pub(crate) fn ensure_lifecycle_order(id: &str, events: &[&str]) -> Result<()> {
    let seen: Vec<&str> = events
        .iter()
        .filter_map(|l| LIFECYCLE.iter().copied().find(|t| l.contains(t)))
        .collect();
    ensure!(
        seen == LIFECYCLE,
        "{id}: task events came as {seen:?}, want {LIFECYCLE:?}"
    );
    Ok(())
}

/// Guests that end the moment they are released (wasm and native): TaskStart is still
/// published before TaskExit, as containerd and CRI expect, and each event comes once.
fn task_start_precedes_exit_for_guests_that_end_at_once(env: &Env) -> Result<()> {
    env.require_shim()?;
    let (wasm, busybox) = (env.wasm_image()?, env.busybox_image()?);
    let mut events = env.ctr().spawn(&["events"], false)?;
    std::thread::sleep(Duration::from_millis(500));
    let mut ids = Vec::new();
    for n in 0..4 {
        let (image, args): (&str, &[&str]) = if n % 2 == 0 {
            (wasm, &["/testprog.wasm", "exit", "0"])
        } else {
            (busybox, &["true"])
        };
        let id = env.unique_id("quick");
        env.ctr().run_rm(&env.runtime(), image, &id, args)?.ok()?;
        ids.push(id);
    }
    std::thread::sleep(Duration::from_millis(500));
    events.kill();
    let out = events.wait(Duration::from_secs(5))?;
    for id in &ids {
        let ours = events::lines_of(&out.stdout, id);
        ensure_lifecycle_order(id, &ours)?;
        env.assert_no_leaks(id)?;
    }
    Ok(())
}

fn seccomp_lines(status: &str) -> Vec<&str> {
    status
        .lines()
        .filter(|l| l.starts_with("Seccomp") || l.starts_with("NoNewPrivs"))
        .collect()
}

struct SeccompCase<'a> {
    name: &'static str,
    flags: &'static [&'static str],
    image: &'a str,
    args: &'static [&'static str],
    /// Expected `Seccomp_filters`; 0 means seccomp is off.
    filters: u32,
}

/// The spec's filter (`ctr run --seccomp`) applies to both kinds; wasm guests always get
/// wasmpod's own filter on top. The host reads a running guest's /proc/PID/status.
fn seccomp_from_spec_and_guest_profile(env: &Env) -> Result<()> {
    env.require_shim()?;
    let wasm = env.wasm_image()?;
    let busybox = env.busybox_image()?;
    // A guest cannot read its own /proc (Landlock, see hostile_guest.rs): the host reads it.
    let status_wasm: &[&str] = &["/testprog.wasm", "sleep", "30"];
    let status_native: &[&str] = &["cat", "/proc/self/status"];
    let cases = [
        SeccompCase {
            name: "sc-wasm",
            flags: &[],
            image: wasm,
            args: status_wasm,
            filters: 1,
        },
        SeccompCase {
            name: "sc-wasm-spec",
            flags: &["--seccomp"],
            image: wasm,
            args: status_wasm,
            filters: 2,
        },
        SeccompCase {
            name: "sc-native-spec",
            flags: &["--seccomp"],
            image: busybox,
            args: status_native,
            filters: 1,
        },
        SeccompCase {
            name: "sc-native",
            flags: &[],
            image: busybox,
            args: status_native,
            filters: 0,
        },
    ];
    for c in cases {
        let id = env.unique_id(c.name);
        let mode = if c.filters == 0 { 0 } else { 2 };
        let expected = [
            format!("Seccomp:\t{mode}"),
            format!("Seccomp_filters:\t{}", c.filters),
            "NoNewPrivs:\t1".to_string(),
        ];
        let out = if c.image == wasm {
            wasm_status_from_host(env, &c, &id, &expected[1])?
        } else {
            env.ctr()
                .run_rm_flags(&env.runtime(), c.flags, c.image, &id, c.args)?
                .ok()?
                .stdout
        };
        let lines = seccomp_lines(&out);
        ensure!(
            expected.iter().all(|e| lines.contains(&e.as_str())),
            "{}: expected {expected:?}, got {lines:?}\n{out}",
            c.name
        );
        env.assert_no_leaks(&id)?;
    }
    Ok(())
}

/// `/proc/PID/status` of a running wasm guest, read from the host once `want` shows (the
/// guest filter is installed just before guest code runs) or after 5 s.
fn wasm_status_from_host(env: &Env, c: &SeccompCase, id: &str, want: &str) -> Result<String> {
    let _cleanup = Cleanup::new(env, &[id]);
    run_detached(env, &env.runtime(), c.flags, c.image, id, c.args)?;
    wait_status(env, id, "RUNNING", Duration::from_secs(30))?;
    let pid = task_ls_pid(env, id)?;
    let mut status = String::new();
    let _ = wait_until(Duration::from_secs(5), || {
        status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.lines().any(|l| l == want)
    });
    kill_and_delete(env, id)?;
    Ok(status)
}
