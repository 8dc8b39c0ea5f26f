//! The `start` action: print the address of the shim serving this container's group,
//! spawning the daemon first when none runs.
//!
//! containerd-shim 0.12 answers `start` with the JSON reply of containerd 1.7+, which
//! containerd 1.6 takes for a socket path. A plain address works with every containerd
//! (newer ones fall back to it when the reply is not JSON), so we answer with that.

use std::io::Write;
use std::path::Path;

use containerd_shim::util::write_address;
use containerd_shim::{Flags, StartOpts};
use wasmpod_runtime::spec;

/// Annotation CRI puts on every container of a pod: the pod's containers share one shim.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// The shim group of a container: its pod's sandbox id, else its own id.
pub fn group_key(bundle: &Path, id: &str) -> String {
    spec::load(bundle)
        .ok()
        .and_then(|s| spec::annotation(&s, SANDBOX_ID).map(str::to_string))
        .unwrap_or_else(|| id.to_string())
}

/// Returns the address of a live shim for the group, spawning one if needed.
pub fn shim_address(opts: StartOpts, bundle: &Path) -> containerd_shim::Result<String> {
    let group = group_key(bundle, &opts.id);
    let address = opts.socket_address(&group);
    if let Ok(fd) = containerd_shim::util::connect(&address) {
        let _ = nix::unistd::close(fd);
        tracing::info!(id = %opts.id, group, "reusing the running shim of this group");
        write_address(&address)?;
        return Ok(address);
    }
    let (_pid, address) = containerd_shim::spawn(opts, &group, Vec::new())?;
    write_address(&address)?;
    Ok(address)
}

pub fn run(flags: &Flags) -> containerd_shim::Result<()> {
    let opts = StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address: flags.address.clone(),
        ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
        namespace: flags.namespace.clone(),
        debug: flags.debug,
        ..Default::default()
    };
    let bundle =
        std::env::current_dir().map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
    let address = shim_address(opts, &bundle)?;
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| containerd_shim::Error::Other(format!("writing the shim address: {e}")))
}
