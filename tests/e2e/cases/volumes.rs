//! Programs delivered on volumes: args[0] (and an exec's program) is found in the container's
//! own view, after its mounts, as Kubernetes users deliver modules on ConfigMaps, emptyDirs
//! filled by an init container, hostPath and persistent volumes.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::{container_config, with_mount};
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE, BUSYBOX_MODULE, HELLO_TXT, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    cases![
        ctr_runs_a_module_from_a_bind_mount,
        cri_modules_from_volumes,
    ]
}

const NOTE: &str = "a note on the volume\n";

/// A host directory (under the private containerd's base) holding testprog as `module_name`
/// and `note.txt`.
fn module_dir(env: &Env, prefix: &str, module_name: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env.containerd().base())?;
    let module = env.fixtures_dir().join("wasm/testprog.wasm");
    std::fs::copy(&module, dir.path().join(module_name))
        .with_context(|| format!("copying {}", module.display()))?;
    std::fs::write(dir.path().join("note.txt"), NOTE)?;
    Ok(dir)
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("temporary path is not UTF-8")
}

/// The reproduction: `ctr run --mount type=bind,…` of a native image whose args[0] is
/// a module on the bind mount runs it (and the guest reads the volume); without the mount the
/// same args fail as before, naming the path.
fn ctr_runs_a_module_from_a_bind_mount(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let dir = module_dir(env, "bind-vol-", "app.wasm")?;
    let mount = format!(
        "type=bind,src={},dst=/vol,options=rbind:ro",
        path_str(dir.path())?
    );
    let id = env.unique_id("vol-bind");
    let out = env
        .ctr()
        .run_rm_flags(
            &env.runtime(),
            &["--mount", &mount],
            image,
            &id,
            &["/vol/app.wasm", "cat", "/vol/note.txt"],
        )?
        .ok()?;
    ensure!(out.stdout == NOTE, "module on a bind mount: {out}");
    env.assert_no_leaks(&id)?;

    let id = env.unique_id("vol-none");
    let out = env.ctr().run_rm(
        &env.runtime(),
        image,
        &id,
        &["/vol/app.wasm", "cat", "/vol/note.txt"],
    )?;
    ensure!(
        !out.success() && out.stderr.contains("\"/vol/app.wasm\" not found in rootfs"),
        "without the mount the module must not be found: {out}"
    );
    env.assert_no_leaks(&id)
}

/// One pod, as kubelet would run it: a native init container copies a module from its image
/// into an emptyDir and a wasm container runs it from there; a module on a read-only hostPath
/// runs, and an exec runs a module from that volume; a volume that shadows an image file
/// (the image's `/bad/not-wasm.wasm` is not wasm) runs the volume's file.
fn cri_modules_from_volumes(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "volumes", env.cri_handler(), &env.pod_logs_root())?;
    let empty_dir = tempfile::Builder::new()
        .prefix("empty-dir-")
        .tempdir_in(env.containerd().base())?;
    let host_path = module_dir(env, "host-path-", "testprog.wasm")?;
    let shadow = module_dir(env, "shadow-", "not-wasm.wasm")?;

    let init = pod.start(&with_mount(
        container_config(
            "init",
            BUSYBOX_IMAGE,
            &["cp", BUSYBOX_MODULE, "/work/app.wasm"],
        ),
        empty_dir.path(),
        "/work",
        false,
    ))?;
    expect_exit(&wait_exited(cri, &init)?, 0, "Completed")?;
    let from_empty_dir = pod.start(&with_mount(
        container_config(
            "from-empty-dir",
            BUSYBOX_IMAGE,
            &["/work/app.wasm", "cat", "/data/hello.txt"],
        ),
        empty_dir.path(),
        "/work",
        false,
    ))?;
    expect_exit(&wait_exited(cri, &from_empty_dir)?, 0, "Completed")?;
    let (stdout, _) = read_log(&pod.log_path("from-empty-dir"), HELLO_TXT.trim_end())?;
    ensure!(
        stdout == HELLO_TXT,
        "module from the emptyDir printed {stdout:?}"
    );

    let from_host_path = pod.start(&with_mount(
        container_config(
            "from-host-path",
            WASM_IMAGE,
            &["/mods/testprog.wasm", "sleep", "600"],
        ),
        host_path.path(),
        "/mods",
        true,
    ))?;
    wait_state(cri, &from_host_path, ContainerState::ContainerRunning)?;
    let out = cri.exec_sync(
        &from_host_path,
        &["/mods/testprog.wasm", "cat", "/mods/note.txt"],
        10,
    )?;
    ensure!(
        out.exit_code == 0 && out.stdout == NOTE.as_bytes(),
        "exec of a module on the read-only hostPath: {out:?}"
    );
    let out = cri.exec_sync(
        &from_host_path,
        &["/mods/testprog.wasm", "write", "/mods/x", "y"],
        10,
    )?;
    ensure!(
        out.exit_code != 0,
        "writing to the read-only hostPath succeeded: {out:?}"
    );

    let shadowed = pod.start(&with_mount(
        container_config(
            "shadowed",
            WASM_IMAGE,
            &["/bad/not-wasm.wasm", "cat", "/bad/note.txt"],
        ),
        shadow.path(),
        "/bad",
        true,
    ))?;
    expect_exit(&wait_exited(cri, &shadowed)?, 0, "Completed")?;
    let (stdout, _) = read_log(&pod.log_path("shadowed"), NOTE.trim_end())?;
    ensure!(stdout == NOTE, "the volume's module printed {stdout:?}");

    remove_and_assert_gone(
        env,
        &mut pod,
        &[&init, &from_empty_dir, &from_host_path, &shadowed],
    )
}
