//! The README's quick start against the private containerd: `make install` (debug build, into a
//! prefix of the case's own), `make load` (the demo images, into this containerd), then
//! `ctr run` of `docker.io/wasmpod/wasi-demo-app`. It does not depend on `E2E_ENGINE` (the
//! quick start uses wasmtime), so it runs once per engine run of the suite.
//!
//! containerd finds `io.containerd.wasmtime.v1` on its PATH, where the harness put the shims
//! of the build first; the runtime is given as the installed binary's absolute path instead,
//! which containerd also accepts, so the shim that runs is the one `make install` copied.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use wasmpod_e2e::{cases, leaks, paths, process, Case, Env};

use crate::support::{self, Cleanup};

pub fn cases() -> Vec<Case> {
    cases![workflow_install_load_run]
}

const DEMO_IMAGE: &str = "docker.io/wasmpod/wasi-demo-app:latest";
const DEMO_OCI_IMAGE: &str = "docker.io/wasmpod/wasi-demo-app:oci";
const CUSTOMHOST_IMAGE: &str = "docker.io/wasmpod/customhost-demo:latest";
const INSTALLED: &[&str] = &[
    "containerd-shim-wasmtime-v1",
    "containerd-shim-wasmer-v1",
    "containerd-shim-customhost-v1",
];
/// `make` runs `make load`'s image writes and imports; generous for a busy 2-core machine.
const MAKE_TIMEOUT: Duration = Duration::from_secs(120);

fn workflow_install_load_run(env: &Env) -> Result<()> {
    let make = paths::require_binary("make", "apt-get install make")?;
    let (target_dir, profile) = build_of(env.shim_dir())?;
    let base = env.containerd().base();
    let prefix = base.join("workflow-prefix");
    let build = [
        format!("PROFILE={profile}"),
        format!("CARGO_TARGET_DIR={}", target_dir.display()),
    ];

    run_make(
        &make,
        "install",
        &build,
        &[format!("PREFIX={}", prefix.display())],
    )?;
    for name in INSTALLED {
        let path = prefix.join("bin").join(name);
        ensure!(
            paths::is_executable(&path),
            "make install did not install {}",
            path.display()
        );
    }

    let load = [
        format!(
            "CONTAINERD_ADDRESS={}",
            env.containerd().address().display()
        ),
        format!("IMAGE_DIR={}", base.join("workflow-images").display()),
    ];
    run_make(&make, "load", &build, &load)?;
    for namespace in ["default", "k8s.io"] {
        let listed = env
            .ctr()
            .clone()
            .with_namespace(namespace)
            .run(&["images", "ls", "-q"])?
            .ok()?;
        for image in [DEMO_IMAGE, DEMO_OCI_IMAGE, CUSTOMHOST_IMAGE] {
            ensure!(
                listed.stdout.lines().any(|l| l.trim() == image),
                "make load did not import {image} into namespace {namespace}: {listed}"
            );
        }
    }

    let wasmtime = runtime_path(&prefix, "containerd-shim-wasmtime-v1")?;
    let echo = env.unique_id("testwasm");
    let out = run_rm(
        env,
        &wasmtime,
        DEMO_IMAGE,
        &echo,
        &["/wasi-demo-app.wasm", "echo", "hello"],
    )?;
    ensure!(
        out.stdout == "hello\n",
        "the quick start's echo printed something else: {out}"
    );

    let cat = env.unique_id("testwasm-oci");
    let args = ["/wasi-demo-app.wasm", "cat", "/data/hello.txt"];
    let out = run_rm(env, &wasmtime, DEMO_OCI_IMAGE, &cat, &args)?;
    ensure!(
        out.stdout == "hello from the wasi-demo-app image\n",
        "the OCI wasm image's cat printed something else: {out}"
    );

    let exit = env.unique_id("testwasm-exit");
    env.ctr()
        .run_rm(
            &wasmtime,
            DEMO_IMAGE,
            &exit,
            &["/wasi-demo-app.wasm", "exit", "3"],
        )?
        .expect_code(3)?;

    let custom = env.unique_id("testwasm-customhost");
    let customhost = runtime_path(&prefix, "containerd-shim-customhost-v1")?;
    let out = run_rm(env, &customhost, CUSTOMHOST_IMAGE, &custom, &[])?;
    ensure!(
        out.stderr == "[wasmpod_demo] hello from the guest\n",
        "the custom host demo's stderr is not the host function's line: {out}"
    );

    daemon_runs_on_the_installed_shim(env, &wasmtime)?;
    for id in [echo, cat, exit, custom] {
        env.assert_no_leaks(&id)?;
    }
    Ok(())
}

/// The image's default command, `daemon`, ticks every second until killed, and the shim serving
/// it is the installed binary.
fn daemon_runs_on_the_installed_shim(env: &Env, runtime: &str) -> Result<()> {
    let id = env.unique_id("testwasm-daemon");
    let _cleanup = Cleanup::new(env, &[&id]);
    support::run_detached(env, runtime, &[], DEMO_IMAGE, &id, &[])?;
    support::wait_status(env, &id, "RUNNING", support::START_TIMEOUT)?;
    let address = env.containerd().address().display().to_string();
    let shims: Vec<u32> = leaks::processes_matching(&format!("-id {id}"))
        .into_iter()
        .filter(|&pid| leaks::cmdline(pid).is_some_and(|c| c.contains(&address)))
        // The daemon, its zygote and workers; not the guest's process in the container.
        .filter(|&pid| !support::in_container_cgroup(pid))
        .collect();
    ensure!(
        !shims.is_empty(),
        "no shim process with -id {id} on {address}"
    );
    for pid in shims {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .with_context(|| format!("reading /proc/{pid}/exe"))?;
        ensure!(
            exe == Path::new(runtime),
            "shim process {pid} of {id} runs {}, not the installed {runtime}",
            exe.display()
        );
    }
    support::kill_and_delete(env, &id)?;
    env.assert_no_leaks(&id)
}

/// `ctr run --rm --runtime=RUNTIME IMAGE ID ARGS...`, which must exit 0.
fn run_rm(
    env: &Env,
    runtime: &str,
    image: &str,
    id: &str,
    args: &[&str],
) -> Result<process::CmdOutput> {
    env.ctr().run_rm(runtime, image, id, args)?.ok()
}

fn runtime_path(prefix: &Path, shim: &str) -> Result<String> {
    let path = prefix.join("bin").join(shim);
    path.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// `make -C <workspace> TARGET VARS...`, which must succeed.
fn run_make(make: &Path, target: &str, build: &[String], vars: &[String]) -> Result<()> {
    let mut cmd = Command::new(make);
    cmd.arg("-C").arg(paths::workspace_root()).arg(target);
    cmd.args(build).args(vars);
    // Not the jobserver of a `make e2e` this runs under.
    cmd.env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    let out = process::run(cmd, None, MAKE_TIMEOUT)?;
    if !out.success() {
        bail!("make {target} failed: {out}");
    }
    Ok(())
}

/// The cargo target dir and profile of the build whose binaries are in `shim_dir`
/// (`<target>/debug` or `<target>/release`), as `make install` and `make load` take them.
fn build_of(shim_dir: &Path) -> Result<(PathBuf, String)> {
    let profile = shim_dir.file_name().and_then(|n| n.to_str());
    match (shim_dir.parent(), profile) {
        (Some(target), Some(profile @ ("debug" | "release"))) => {
            Ok((target.to_path_buf(), profile.to_string()))
        }
        _ => bail!(
            "WASMPOD_SHIM_DIR={} is not a cargo profile directory (<target>/debug or \
             <target>/release), which make install and make load need",
            shim_dir.display()
        ),
    }
}
