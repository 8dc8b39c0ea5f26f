//! The `delete` action: containerd calls it after every task, and after a shim died. It must
//! clean up without a running shim: kill what is left, remove the cgroup, state and mounts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::Flags;
use wasmpod_runtime::container;
use wasmpod_runtime::mount::unmount_all;

use crate::events::timestamp;
use crate::start_lock;

/// A killed daemon leaves its socket behind; remove it when nothing listens there anymore.
fn remove_dead_socket(flags: &Flags, bundle: &Path) {
    let group = crate::start::group_key(bundle, &flags.id);
    let address = containerd_shim::socket_address(&flags.address, &flags.namespace, &group);
    let Ok(_lock) = start_lock::acquire() else {
        return;
    };
    if start_lock::is_listening(&address) {
        return;
    }
    let path = address.strip_prefix("unix://").unwrap_or(&address);
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(socket = path, "removed the socket of a dead shim"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(socket = path, error = %e, "removing a dead shim's socket"),
    }
}

/// Unmounts what a shim mounts itself: containerd's rootfs mounts, always on `<bundle>/rootfs`.
/// Never the spec's `root.path`: with `ctr run --rootfs /host/dir` that is a host directory
/// (maybe a mount of the host's own) that the shim did not mount and must leave alone.
fn unmount_own_rootfs(bundle: &Path) -> anyhow::Result<()> {
    let rootfs = bundle.join("rootfs");
    match std::fs::symlink_metadata(&rootfs) {
        Ok(meta) if meta.is_dir() => Ok(unmount_all(&rootfs)?),
        Ok(_) => {
            tracing::warn!(path = %rootfs.display(), "not a directory: left alone");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn run(flags: &Flags) -> anyhow::Result<()> {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir()?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let root = container::state_root(&flags.namespace);
    container::delete(&root, &flags.id)?;
    unmount_own_rootfs(&bundle)?;
    remove_dead_socket(flags, &bundle);
    let response = DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(timestamp(SystemTime::now())).into(),
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    response.write_to_writer(&mut out)?;
    out.flush()?;
    Ok(())
}
