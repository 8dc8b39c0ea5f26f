//! The `delete` action: containerd calls it after every task, and after a shim died. It must
//! clean up without a running shim: kill what is left, remove the cgroup, state and mounts.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::Flags;
use wasmpod_runtime::container;
use wasmpod_runtime::mount::unmount_all;
use wasmpod_runtime::spec;

use crate::events::timestamp;
use crate::start_lock;

/// A killed daemon leaves its socket behind; remove it when nothing listens there anymore.
fn remove_dead_socket(flags: &Flags, bundle: &std::path::Path) {
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

pub fn run(flags: &Flags) -> anyhow::Result<()> {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir()?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let root = container::state_root(&flags.namespace);
    container::delete(&root, &flags.id)?;
    let rootfs = spec::load(&bundle)
        .map(|s| spec::rootfs(&s, &bundle))
        .unwrap_or_else(|_| bundle.join("rootfs"));
    unmount_all(&rootfs)?;
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
