//! Restarting containerd (or the k3s/RKE2 service that runs it) so that it reads its new
//! config: through systemd when the node runs it, else through the service's init script.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};
use crate::target::Flavor;

/// The services that may run containerd for `flavor`, in the order they are tried.
fn services(flavor: Flavor) -> &'static [&'static str] {
    match flavor {
        Flavor::Containerd => &["containerd"],
        Flavor::K3s => &["k3s", "k3s-agent"],
        Flavor::Rke2 => &["rke2-server", "rke2-agent"],
    }
}

/// Restarts the service running containerd; returns the command it ran.
pub fn restart(flavor: Flavor) -> Result<String> {
    let names = services(flavor);
    if Path::new("/run/systemd/system").is_dir() {
        let active = names.iter().find(|unit| {
            Command::new("systemctl")
                .args(["is-active", "--quiet", unit])
                .status()
                .is_ok_and(|s| s.success())
        });
        let unit = active.ok_or_else(|| Error::Command {
            command: format!("systemctl is-active {}", names.join(" ")),
            detail: "none of these units is active; start containerd yourself".into(),
        })?;
        return run(Command::new("systemctl").args(["restart", unit]));
    }
    let script = names
        .iter()
        .map(|name| Path::new("/etc/init.d").join(name))
        .find(|path| path.exists())
        .ok_or_else(|| Error::Command {
            command: "restart".into(),
            detail: format!(
                "no systemd and no /etc/init.d/{} on this node: restart containerd yourself",
                names.join(" or /etc/init.d/")
            ),
        })?;
    run(Command::new(script).arg("restart"))
}

fn run(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}").replace('"', "");
    let out = command.output().map_err(|e| Error::Command {
        command: shown.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: shown,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(shown)
}
