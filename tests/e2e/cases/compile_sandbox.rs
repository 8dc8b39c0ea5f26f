//! Tenant modules are compiled outside the shim, in a bounded sandbox of the node's own (issue
//! "Tenant isolation", item 3): the shim's memory stays small while a large module compiles,
//! the node's compile memory limit and timeout give messages in words, compiles are serialised
//! by the node's job limit, and a pod's own memory limit does not decide whether its module can
//! be compiled.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_e2e::images::import;
use wasmpod_e2e::wasm_gen::{big_data_module, many_functions_module};
use wasmpod_e2e::{cases, Case, CmdOutput, Env};
use wasmpod_oci_image::ImageBuilder;

use crate::support::{daemon_of, kill_and_delete, run_detached, Cleanup, SANDBOX_ID};

pub fn cases() -> Vec<Case> {
    cases![
        compile_large_module_keeps_the_shim_small,
        compile_memory_limit_is_named_and_the_shim_serves_on,
        compile_timeout_is_named,
        compile_jobs_serialise_two_pods,
        compile_needs_more_than_the_pods_memory_limit,
    ]
}

/// The size of the large module: its data segment (the module is a few bytes more).
const BIG_DATA: usize = 24 << 20;
/// A module whose compile needs well over 64 MiB (it is read, turned into a memory image and
/// serialised: three copies).
const BIGGER_DATA: usize = 40 << 20;
/// Far below the large module's size: what the shim may use at its peak meanwhile.
const SHIM_PEAK_LIMIT_KIB: u64 = 64 << 10;

/// Imports an image named `name` whose only file is `module` at `/app.wasm`.
pub(crate) fn import_module(env: &Env, name: &str, module: Vec<u8>) -> Result<String> {
    let image = ImageBuilder::new(&format!("docker.io/wasmpod/{name}:latest"))
        .entrypoint(vec!["/app.wasm".to_string()])
        .add_file("/app.wasm", module, 0o755);
    let dir = tempfile::Builder::new()
        .prefix("image-")
        .tempdir_in(env.containerd().base())?;
    import(env.ctr(), &image, &dir.path().join("image.tar"))
}

/// `ctr run --rm IMAGE ID ARGS` for each `(image, id)` of `runs` at once, on threads of their
/// own (a compile may take a while: 180 s each at most).
pub(crate) fn run_rm_at_once(
    env: &Env,
    runs: &[(&str, &str)],
    args: &[&str],
) -> Result<Vec<CmdOutput>> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = runs
            .iter()
            .map(|&(image, id)| {
                scope.spawn(move || {
                    env.ctr()
                        .clone()
                        .with_timeout(Duration::from_secs(180))
                        .run_rm(&env.runtime(), image, id, args)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| anyhow::anyhow!("ctr thread panicked"))?
            })
            .collect()
    })
}

/// `VmHWM` (peak resident set) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")
}

/// Starts a sleeping wasm container in pod `pod` so that its shim stays up; returns its id and
/// the shim's pid.
fn pod_shim(env: &Env, pod: &str, flags: &[&str]) -> Result<(String, u32)> {
    let id = env.unique_id(&format!("{pod}-sleeper"));
    run_detached(
        env,
        &env.runtime(),
        flags,
        env.wasm_image()?,
        &id,
        &["/testprog.wasm", "sleep", "300"],
    )?;
    let (daemon, _) = daemon_of(env, &id)?;
    Ok((id, daemon.proc.pid))
}

/// A 24 MiB module compiles while the pod's shim stays below 64 MiB at its peak: the shim
/// never holds the module (it streams it into a sealed buffer for the compile process).
fn compile_large_module_keeps_the_shim_small(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = import_module(env, "big-data", big_data_module(BIG_DATA, 1))?;
    let pod = env.unique_id("big-pod");
    let annotation = format!("{SANDBOX_ID}={pod}");
    let flags = ["--annotation", annotation.as_str()];
    let (sleeper, shim) = pod_shim(env, &pod, &flags)?;
    let big = env.unique_id("big-run");
    let _cleanup = Cleanup::new(env, &[&sleeper, &big]);
    let out = env
        .ctr()
        .clone()
        .with_timeout(Duration::from_secs(120))
        .run_rm_flags(&env.runtime(), &flags, &image, &big, &["/app.wasm"])?;
    ensure!(out.success(), "the 24 MiB module did not run: {out}");
    let peak = peak_rss_kib(shim)?;
    ensure!(
        peak < SHIM_PEAK_LIMIT_KIB,
        "the shim's peak RSS reached {peak} KiB while a {} MiB module compiled (limit {} KiB)",
        BIG_DATA >> 20,
        SHIM_PEAK_LIMIT_KIB
    );
    kill_and_delete(env, &sleeper)?;
    env.assert_no_leaks(&big)?;
    env.assert_no_leaks(&sleeper)
}

/// A containerd whose shims get `vars`, with a compile cgroup of this test's own (removed
/// when dropped), so its limits never touch other tests' compiles.
struct CompileEnv {
    env: Env,
    cgroup: String,
}

impl CompileEnv {
    fn start(shared: &Env, name: &str, vars: &[(&str, &str)]) -> Result<Self> {
        let cgroup = format!("wasmpod-e2e-{name}-{}", std::process::id());
        let mut all = vars.to_vec();
        all.push(("WASMPOD_COMPILE_CGROUP", cgroup.as_str()));
        let env = Env::with_shim_env(shared.shim_dir(), &all)
            .with_context(|| format!("starting a private containerd with {vars:?}"))?;
        env.require_shim()?;
        Ok(Self { env, cgroup })
    }
}

impl Drop for CompileEnv {
    fn drop(&mut self) {
        let _ = self.env.stop_gracefully();
        for controller in ["memory", "cpu", ""] {
            let _ = std::fs::remove_dir(
                Path::new("/sys/fs/cgroup")
                    .join(controller)
                    .join(&self.cgroup),
            );
        }
    }
}

/// With a 32 MiB compile memory limit, a 40 MiB module cannot be compiled: Create fails naming
/// the limit, and the pod's shim keeps serving (another container starts in it afterwards).
fn compile_memory_limit_is_named_and_the_shim_serves_on(shared: &Env) -> Result<()> {
    let compile = CompileEnv::start(shared, "mem", &[("WASMPOD_COMPILE_MEMORY", "32M")])?;
    let env = &compile.env;
    let image = import_module(env, "big-data", big_data_module(BIGGER_DATA, 2))?;
    let pod = env.unique_id("mem-pod");
    let annotation = format!("{SANDBOX_ID}={pod}");
    let flags = ["--annotation", annotation.as_str()];
    let (sleeper, shim) = pod_shim(env, &pod, &flags)?;
    let big = env.unique_id("mem-big");
    let after = env.unique_id("mem-after");
    let _cleanup = Cleanup::new(env, &[&sleeper, &big, &after]);
    let out = env
        .ctr()
        .clone()
        .with_timeout(Duration::from_secs(120))
        .run_rm_flags(&env.runtime(), &flags, &image, &big, &["/app.wasm"])?;
    let want = "compiling /app.wasm needed more than the node's compile memory limit (32 MiB)";
    ensure!(
        !out.success() && out.stderr.contains(want),
        "expected `{want}`: {out}"
    );
    let next = env.ctr().run_rm_flags(
        &env.runtime(),
        &flags,
        env.wasm_image()?,
        &after,
        &["/hello.wasm", "after"],
    )?;
    ensure!(
        next.success() && next.stdout.contains("arg[1]=after"),
        "the shim did not serve a container after the failed compile: {next}"
    );
    let (daemon, _) = daemon_of(env, &sleeper)?;
    ensure!(daemon.proc.pid == shim, "the pod's shim was replaced");
    kill_and_delete(env, &sleeper)?;
    for id in [&big, &after, &sleeper] {
        env.assert_no_leaks(id)?;
    }
    Ok(())
}

/// A module that takes seconds to compile, under a 1 s compile timeout: Create fails within
/// the limit (plus ctr's own time), naming it.
fn compile_timeout_is_named(shared: &Env) -> Result<()> {
    let compile = CompileEnv::start(shared, "timeout", &[("WASMPOD_COMPILE_TIMEOUT", "1")])?;
    let env = &compile.env;
    let image = import_module(env, "slow-compile", many_functions_module(60_000, 1))?;
    let id = env.unique_id("timeout");
    let out = env
        .ctr()
        .clone()
        .with_timeout(Duration::from_secs(60))
        .run_rm(&env.runtime(), &image, &id, &["/app.wasm"])?;
    let want = "compiling /app.wasm timed out after 1 s";
    ensure!(
        !out.success() && out.stderr.contains(want),
        "expected `{want}`: {out}"
    );
    ensure!(
        out.elapsed < Duration::from_secs(4),
        "refusing took {:?} with a 1 s compile timeout",
        out.elapsed
    );
    env.assert_no_leaks(&id)
}

/// Two pods compile different modules at once on a node allowing one compile: both start,
/// and the shim logs show the second waited for the first (its queue time covers most of the
/// other's compile time).
fn compile_jobs_serialise_two_pods(shared: &Env) -> Result<()> {
    let compile = CompileEnv::start(shared, "jobs", &[("WASMPOD_COMPILE_JOBS", "1")])?;
    let env = &compile.env;
    let images = [
        import_module(env, "jobs-a", many_functions_module(3_000, 11))?,
        import_module(env, "jobs-b", many_functions_module(3_000, 12))?,
    ];
    let ids = [env.unique_id("jobs-a"), env.unique_id("jobs-b")];
    let runs: Vec<(&str, &str)> = ids
        .iter()
        .zip(&images)
        .map(|(id, image)| (image.as_str(), id.as_str()))
        .collect();
    let outs = run_rm_at_once(env, &runs, &["/app.wasm"])?;
    for out in &outs {
        ensure!(out.success(), "a pod did not start: {out}");
    }
    let mut timings = Vec::new();
    for id in &ids {
        let queued = log_number(env, id, "queued_ms")?;
        let compiled = log_number(env, id, "compile_ms")?;
        timings.push((queued, compiled));
    }
    let (first, second) = if timings[0].0 <= timings[1].0 {
        (timings[0], timings[1])
    } else {
        (timings[1], timings[0])
    };
    ensure!(
        second.0 * 2 >= first.1,
        "with one compile job, the later compile should have waited for the earlier one: \
         (queued ms, compile ms) = {timings:?}"
    );
    for id in &ids {
        env.assert_no_leaks(id)?;
    }
    Ok(())
}

/// A number field of the shim's "module compiled" line for `id`.
fn log_number(env: &Env, id: &str, field: &str) -> Result<u64> {
    let rest = crate::support::shim_log_field(env, "module compiled", id, field)?;
    let value = rest.split_whitespace().next().unwrap_or_default();
    value
        .trim_matches(['\\', '"'])
        .parse()
        .with_context(|| format!("{field} of {id}: {rest:?}"))
}

/// A container limited to 64 MiB runs a module whose compilation needs more than that: the
/// compile is node work, charged to the node's compile cgroup, not to the pod.
fn compile_needs_more_than_the_pods_memory_limit(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = import_module(env, "big-data-64", big_data_module(BIGGER_DATA, 3))?;
    let id = env.unique_id("pod-64m");
    let limit = (64u64 << 20).to_string();
    let out = env
        .ctr()
        .clone()
        .with_timeout(Duration::from_secs(120))
        .run_rm_flags(
            &env.runtime(),
            &["--memory-limit", &limit],
            &image,
            &id,
            &["/app.wasm"],
        )?;
    ensure!(
        out.success(),
        "a 64 MiB container could not run a module that needs more to compile: {out}"
    );
    let peak = log_number(env, &id, "compile_peak_kib")?;
    ensure!(
        peak > 64 << 10,
        "the compile needed only {peak} KiB: not more than the container's 64 MiB"
    );
    env.assert_no_leaks(&id)
}
