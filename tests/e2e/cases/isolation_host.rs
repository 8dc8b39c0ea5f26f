//! What the shim leaves on the host: its ttrpc socket is `0600` whatever containerd's umask,
//! and cleanup after a killed shim never touches what it did not create (a `--rootfs` host
//! directory that is itself a mount stays mounted).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_e2e::{cases, leaks, mounts, Case, Env};

use crate::hostile_support::{assert_clean, mount, umount_detach, HostRootfs};
use crate::support::{kill_and_delete, kill_shim_then_delete, run_detached, wait_status, Cleanup};

pub fn cases() -> Vec<Case> {
    cases![
        host_shim_socket_is_0600_under_umask_0,
        host_rootfs_mount_survives_a_killed_shim,
    ]
}

/// The runtime is a wrapper script (containerd takes an absolute path as the runtime) that
/// sets umask 0 and execs the real shim; the daemon it spawns inherits that umask.
fn host_shim_socket_is_0600_under_umask_0(env: &Env) -> Result<()> {
    let shim = env.require_shim()?;
    let dir = tempfile::Builder::new()
        .prefix("umask0-")
        .tempdir_in(env.containerd().base())?;
    let wrapper = dir.path().join(env.shim_binary());
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\numask 0\nexec {} \"$@\"\n", shim.display()),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    let runtime = wrapper.to_str().context("wrapper path is not UTF-8")?;

    let id = env.unique_id("umask0");
    let _cleanup = Cleanup::new(env, &[&id]);
    run_detached(
        env,
        runtime,
        &[],
        env.wasm_image()?,
        &id,
        &["/testprog.wasm", "sleep", "300"],
    )?;
    wait_status(env, &id, "RUNNING", Duration::from_secs(30))?;
    let socket = leaks::shim_socket_for(env.containerd().address(), "default", &id);
    let meta = std::fs::metadata(&socket)
        .with_context(|| format!("the shim socket {} of {id}", socket.display()))?;
    ensure!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        socket.display()
    );
    let mode = meta.permissions().mode() & 0o7777;
    ensure!(
        mode == 0o600,
        "shim socket {} has mode {mode:o} under umask 0 (want 600)",
        socket.display()
    );
    kill_and_delete(env, &id)?;
    assert_clean(env, &id)
}

/// `ctr run --rootfs DIR` where DIR is a bind mount made here; the shim is SIGKILLed and the
/// container deleted (containerd runs the shim's `delete` action): DIR is still mounted.
fn host_rootfs_mount_survives_a_killed_shim(env: &Env) -> Result<()> {
    env.require_shim()?;
    let source = HostRootfs::with_testprog(env, "bindsrc")?;
    let target = tempfile::Builder::new()
        .prefix("bindtarget-")
        .tempdir_in(env.containerd().base())?;
    let target_path = target.path().to_path_buf();
    mount(Some(source.path_str()?), &target_path, None, libc::MS_BIND)?;
    let result = kill_shim_on_mounted_rootfs(env, &target_path);
    let still_mounted = is_mount_point(&target_path);
    if still_mounted {
        umount_detach(&target_path)?;
    }
    result?;
    ensure!(
        still_mounted,
        "{} (a host mount used with --rootfs) was unmounted by the shim's cleanup",
        target_path.display()
    );
    Ok(())
}

fn kill_shim_on_mounted_rootfs(env: &Env, rootfs: &std::path::Path) -> Result<()> {
    let id = env.unique_id("hostmount");
    let _cleanup = Cleanup::new(env, &[&id]);
    run_detached(
        env,
        &env.runtime(),
        &["--rootfs"],
        rootfs.to_str().context("rootfs path is not UTF-8")?,
        &id,
        &["/testprog.wasm", "sleep", "300"],
    )?;
    wait_status(env, &id, "RUNNING", Duration::from_secs(30))?;
    ensure!(
        is_mount_point(rootfs),
        "the bind mount is gone before the kill"
    );
    kill_shim_then_delete(env, &id)?;
    assert_clean(env, &id)
}

fn is_mount_point(path: &std::path::Path) -> bool {
    mounts::mounts()
        .unwrap_or_default()
        .iter()
        .any(|m| m.mount_point == path)
}
