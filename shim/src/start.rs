//! The `start` action: print the address of the shim serving this container's group,
//! spawning the daemon first when none runs.
//!
//! containerd-shim 0.12 answers `start` with the JSON reply of containerd 1.7+, which
//! containerd 1.6 takes for a socket path. A plain address works with every containerd
//! (newer ones fall back to it when the reply is not JSON), so we answer with that.

use std::io::Write;
use std::path::Path;

use std::time::Duration;

use containerd_shim::api;
use containerd_shim::protos::shim_sync::TaskClient;
use containerd_shim::protos::ttrpc;
use containerd_shim::util::write_address;
use containerd_shim::{Flags, StartOpts};
use wasmpod_runtime::spec;

use crate::start_lock;

const RESERVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Annotation CRI puts on every container of a pod: the pod's containers share one shim.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// The shim group of a container: its pod's sandbox id, else its own id.
pub fn group_key(bundle: &Path, id: &str) -> String {
    spec::load(bundle)
        .ok()
        .and_then(|s| spec::annotation(&s, SANDBOX_ID).map(str::to_string))
        .unwrap_or_else(|| id.to_string())
}

/// Asks the group's daemon to stay up for the container about to be created: a daemon that
/// answers our Connect holds off its idle exit for a grace period.
fn reserve(address: &str, id: &str) -> Result<(), String> {
    let client = ttrpc::Client::connect(address).map_err(|e| e.to_string())?;
    let request = api::ConnectRequest {
        id: id.to_string(),
        ..Default::default()
    };
    TaskClient::new(client)
        .connect(
            ttrpc::context::with_timeout(RESERVE_TIMEOUT.as_nanos() as i64),
            &request,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Returns the address of a live shim for the group, spawning one if needed.
pub fn shim_address(opts: StartOpts, bundle: &Path) -> containerd_shim::Result<String> {
    let group = group_key(bundle, &opts.id);
    let address = opts.socket_address(&group);
    let _lock = start_lock::acquire().map_err(|e| other(format!("start lock: {e}")))?;
    match reserve(&address, &opts.id) {
        Ok(()) => {
            write_address(&address)?;
            return Ok(address);
        }
        Err(e) if start_lock::is_listening(&address) => {
            return Err(other(format!("the shim at {address} does not answer: {e}")));
        }
        Err(_) => {}
    }
    let (_pid, address) = containerd_shim::spawn(opts, &group, Vec::new())?;
    write_address(&address)?;
    Ok(address)
}

fn other(msg: String) -> containerd_shim::Error {
    containerd_shim::Error::Other(msg)
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
        .map_err(|e| other(format!("writing the shim address: {e}")))
}
