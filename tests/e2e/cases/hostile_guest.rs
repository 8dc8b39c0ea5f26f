//! Issue 10, item 1: the process that runs a wasm guest holds nothing of the host. Its
//! environ and cmdline are the container's own, guest code cannot open procfs or sysfs, and
//! no descriptor but stdio and the engine's own is open when it runs.
//!
//! The checks from outside the guest use a native exec (busybox) into the running wasm
//! container, so they use an image holding both busybox and `testprog.wasm`.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use wasmpod_e2e::containerd::{host_marker, HOST_MARKER_VAR};
use wasmpod_e2e::{cases, images, Case, CmdOutput, Env, HELLO_TXT};
use wasmpod_oci_image::busybox_image;

use crate::support::{kill_and_delete, run_detached, task_ls_pid, wait_status, Cleanup};

/// busybox, `/testprog.wasm` and `/data/hello.txt`.
const IMAGE: &str = "docker.io/wasmpod/hostile-guest:latest";
/// A variable of the container's spec, expected in the guest's environ.
const SPEC_VAR: &str = "WASMPOD_E2E_SPEC_VAR=from-the-spec";

pub fn cases() -> Vec<Case> {
    cases![
        hostile_guest_env_has_nothing_of_the_host,
        hostile_guest_process_seen_from_a_native_exec,
        hostile_guest_cannot_open_procfs_or_sysfs
    ]
}

fn image(env: &Env) -> Result<&'static str> {
    static IMPORTED: OnceLock<Result<String, String>> = OnceLock::new();
    let imported = IMPORTED.get_or_init(|| {
        let build = || -> Result<String> {
            let testprog = env.fixtures_dir().join("wasm/testprog.wasm");
            let bytes = std::fs::read(&testprog)
                .with_context(|| format!("{} (run tests/fixtures/build.sh)", testprog.display()))?;
            let image = busybox_image(IMAGE, std::path::Path::new(images::HOST_BUSYBOX))?
                .add_file("/testprog.wasm", bytes, 0o755)
                .add_dir("/data", 0o755)
                .add_file("/data/hello.txt", HELLO_TXT.as_bytes().to_vec(), 0o644);
            let tar = env.containerd().base().join("hostile-guest.tar");
            images::import(env.ctr(), &image, &tar)
        };
        build().map_err(|e| format!("{e:#}"))
    });
    imported.as_deref().map_err(|e| anyhow!("{e}"))
}

/// The marker must really be in containerd's environment, or the checks below prove nothing.
fn marker_in_containerd(env: &Env) -> Result<&'static str> {
    let pid = env.containerd().pid();
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let wanted = format!("{HOST_MARKER_VAR}={}", host_marker());
    ensure!(
        split_nul(&environ).contains(&wanted),
        "the test containerd (pid {pid}) lacks {wanted}"
    );
    Ok(host_marker())
}

fn split_nul(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn exec(env: &Env, id: &str, exec_id: &str, args: &[&str]) -> Result<CmdOutput> {
    let mut all = vec!["task", "exec", "--exec-id", exec_id, id];
    all.extend_from_slice(args);
    env.ctr().run(&all)
}

/// The guest's own environment (WASI) is the spec's: the image's, plus `--env`.
fn hostile_guest_env_has_nothing_of_the_host(env: &Env) -> Result<()> {
    env.require_shim()?;
    let marker = marker_in_containerd(env)?;
    let image = image(env)?;
    let id = env.unique_id("hostile-env");
    let _cleanup = Cleanup::new(env, &[&id]);
    let out = env
        .ctr()
        .run_rm_flags(
            &env.runtime(),
            &["--env", SPEC_VAR],
            image,
            &id,
            &["/testprog.wasm", "env"],
        )?
        .ok()?;
    ensure!(
        !out.stdout.contains(marker),
        "the host marker reached the guest: {out}"
    );
    let vars: Vec<&str> = out.stdout.lines().collect();
    ensure!(vars.contains(&SPEC_VAR), "spec variable missing: {out}");
    for var in &vars {
        ensure!(
            *var == SPEC_VAR || var.starts_with("PATH="),
            "unexpected variable {var:?} in the guest: {out}"
        );
    }
    Ok(())
}

/// The guest's process, seen from a native exec in the container and from the host:
/// `environ` is the spec's env, `cmdline` the guest's args, and `fd/` holds stdio and the
/// engine's own descriptors only.
///
/// libcontainer makes the init non-dumpable before it joins the container (as runc does), and
/// a wasm init never execs, so it stays so: a process of the container (same uid and caps)
/// may read its `cmdline` but not its `environ`, `mem` or descriptor links. That is checked
/// too; the rest is read from the host, as root, through the task's pid.
fn hostile_guest_process_seen_from_a_native_exec(env: &Env) -> Result<()> {
    env.require_shim()?;
    let marker = marker_in_containerd(env)?;
    let image = image(env)?;
    let id = env.unique_id("hostile-proc");
    let _cleanup = Cleanup::new(env, &[&id]);
    let args = ["/testprog.wasm", "sleep", "60"];
    run_detached(env, &env.runtime(), &["--env", SPEC_VAR], image, &id, &args)?;
    wait_status(env, &id, "RUNNING", Duration::from_secs(30))?;
    // RUNNING comes when the init is released; give it a moment to reach the guest.
    std::thread::sleep(Duration::from_millis(500));
    let pid = task_ls_pid(env, &id)?;

    let cmdline = exec(
        env,
        &id,
        "cmdline",
        &["/bin/busybox", "cat", "/proc/1/cmdline"],
    )?
    .ok()?;
    ensure!(
        !cmdline.stdout.contains(marker),
        "host marker in /proc/1/cmdline: {cmdline}"
    );
    let seen = split_nul(cmdline.stdout.as_bytes());
    ensure!(seen == args, "/proc/1/cmdline is {seen:?}, want {args:?}");
    let host_cmdline = split_nul(&std::fs::read(format!("/proc/{pid}/cmdline"))?);
    ensure!(
        host_cmdline == args,
        "host /proc/{pid}/cmdline is {host_cmdline:?}"
    );

    let environ = exec(
        env,
        &id,
        "environ",
        &["/bin/busybox", "cat", "/proc/1/environ"],
    )?;
    ensure!(
        !environ.success() && environ.stderr.contains("Permission denied"),
        "a process of the container read the wasm init's environ: {environ}"
    );
    let spec_env = spec_env(env, &id)?;
    let raw = std::fs::read(format!("/proc/{pid}/environ"))?;
    ensure!(
        !String::from_utf8_lossy(&raw).contains(marker),
        "host marker in /proc/{pid}/environ"
    );
    let seen = split_nul(&raw);
    ensure!(
        seen == spec_env,
        "/proc/{pid}/environ is {seen:?}, the spec's env is {spec_env:?}"
    );

    let fds = exec(
        env,
        &id,
        "fds",
        &["/bin/busybox", "ls", "-l", "/proc/1/fd/"],
    )?;
    ensure!(
        !fds.stdout.contains(" -> "),
        "a process of the container read the wasm init's descriptor links: {fds}"
    );
    let listing = host_fd_listing(pid)?;
    check_descriptors(&listing).with_context(|| format!("/proc/{pid}/fd:\n{listing}"))?;

    kill_and_delete(env, &id)?;
    env.assert_no_leaks(&id)
}

/// `ls -l`-like lines `N -> TARGET` for each descriptor of `pid`.
fn host_fd_listing(pid: u32) -> Result<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let target = std::fs::read_link(entry.path())?;
        lines.push(format!(
            "{} -> {}",
            entry.file_name().to_string_lossy(),
            target.display()
        ));
    }
    lines.sort();
    Ok(lines.join("\n"))
}

/// Lines `... N -> TARGET` (as `ls -l` prints them). Descriptors 0-2 are
/// stdio (FIFOs or /dev/null); any other must be something the engine opened for itself.
fn check_descriptors(listing: &str) -> Result<()> {
    let mut seen = 0;
    for line in listing.lines().filter(|l| l.contains(" -> ")) {
        let (left, target) = line.split_once(" -> ").context("no link target")?;
        let fd: u32 = left
            .split_whitespace()
            .last()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no descriptor number in {line:?}"))?;
        seen += 1;
        if fd <= 2 {
            continue;
        }
        let engine_own = target == "/"
            || target.starts_with("anon_inode:")
            || target.starts_with("/memfd:wasm-memory-image");
        if !engine_own {
            bail!("descriptor {fd} -> {target} is not the guest's nor the engine's");
        }
    }
    ensure!(seen >= 3, "stdio not listed");
    Ok(())
}

fn spec_env(env: &Env, id: &str) -> Result<Vec<String>> {
    let info = env.ctr().run(&["containers", "info", id])?.ok()?;
    let json: serde_json::Value = serde_json::from_str(&info.stdout).context("ctr c info")?;
    let vars = json
        .pointer("/Spec/process/env")
        .and_then(|v| v.as_array())
        .context("no Spec.process.env in ctr c info")?;
    Ok(vars
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect())
}

/// Wasm execs into a running wasm container (same executor as the init): each hostile open
/// fails, the ordinary file access still works.
fn hostile_guest_cannot_open_procfs_or_sysfs(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = image(env)?;
    let id = env.unique_id("hostile-open");
    let _cleanup = Cleanup::new(env, &[&id]);
    run_detached(
        env,
        &env.runtime(),
        &[],
        image,
        &id,
        &["/testprog.wasm", "sleep", "60"],
    )?;
    wait_status(env, &id, "RUNNING", Duration::from_secs(30))?;

    let refused: &[&[&str]] = &[
        &["open-write", "/proc/self/mem"],
        &["cat", "/proc/self/maps"],
        &["cat", "/proc/self/environ"],
        &["ls", "/proc/self/fd"],
        &["cat", "/proc/1/cmdline"],
        &["ls", "/proc"],
        &["ls", "/sys/class"],
        &["cat", "/sys/kernel/mm/transparent_hugepage/enabled"],
        &["open-write", "/dev/kmsg"],
    ];
    for (n, probe) in refused.iter().enumerate() {
        let mut args = vec!["/testprog.wasm"];
        args.extend_from_slice(probe);
        let out = exec(env, &id, &format!("refused{n}"), &args)?;
        let what = probe.join(" ");
        // testprog's own refusal line (`MODE PATH: ...`), not a failure to start the exec.
        ensure!(
            !out.success() && out.stderr.contains(&format!("{what}: ")),
            "`{what}` was allowed: {out}"
        );
    }

    let read = exec(
        env,
        &id,
        "read",
        &["/testprog.wasm", "cat", "/data/hello.txt"],
    )?
    .ok()?;
    ensure!(read.stdout == HELLO_TXT, "reading /data/hello.txt: {read}");
    let write = exec(
        env,
        &id,
        "write",
        &["/testprog.wasm", "write", "/tmp/probe.txt", "x"],
    )?
    .ok()?;
    ensure!(write.stdout.contains("write /tmp/probe.txt: OK"), "{write}");
    let back = exec(
        env,
        &id,
        "readback",
        &["/testprog.wasm", "cat", "/tmp/probe.txt"],
    )?
    .ok()?;
    ensure!(back.stdout == "x", "reading back /tmp/probe.txt: {back}");
    let listed = exec(env, &id, "list", &["/testprog.wasm", "ls", "/data"])?.ok()?;
    ensure!(listed.stdout.contains("hello.txt\n"), "ls /data: {listed}");
    let null = exec(
        env,
        &id,
        "null",
        &["/testprog.wasm", "open-write", "/dev/null"],
    )?
    .ok()?;
    ensure!(null.stdout.contains("OK"), "open-write /dev/null: {null}");

    wait_status(env, &id, "RUNNING", Duration::from_secs(5))?;
    kill_and_delete(env, &id)?;
    env.assert_no_leaks(&id)
}
