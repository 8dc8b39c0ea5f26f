//! Restarting containerd (or the k3s/RKE2 service that runs it) so that it reads its new
//! config: through systemd when the node runs it, else through the service's init script.

use std::path::{Path, PathBuf};
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

/// What the node offers to restart a service with.
pub struct Init<'a> {
    pub systemd: bool,
    /// Whether a systemd unit is active.
    pub active: &'a dyn Fn(&str) -> bool,
    /// Where init scripts are (`/etc/init.d`).
    pub scripts: &'a Path,
}

/// The restart command for `flavor`: `systemctl restart UNIT` for the first active unit under
/// systemd, else `/etc/init.d/NAME restart` for the first script there.
pub fn command(flavor: Flavor, init: &Init<'_>) -> Result<Vec<String>> {
    let names = services(flavor);
    if init.systemd {
        let unit = names
            .iter()
            .find(|unit| (init.active)(unit))
            .ok_or_else(|| Error::Command {
                command: format!("systemctl is-active {}", names.join(" ")),
                detail: "none of these units is active; start containerd yourself".into(),
            })?;
        return Ok(vec!["systemctl".into(), "restart".into(), unit.to_string()]);
    }
    let script: PathBuf = names
        .iter()
        .map(|name| init.scripts.join(name))
        .find(|path| path.exists())
        .ok_or_else(|| Error::Command {
            command: "restart".into(),
            detail: format!(
                "no systemd and no {} on this node: restart containerd yourself",
                names
                    .iter()
                    .map(|n| init.scripts.join(n).display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        })?;
    Ok(vec![script.display().to_string(), "restart".into()])
}

/// Restarts the service running containerd on this node; returns the command it ran.
pub fn restart(flavor: Flavor) -> Result<String> {
    let active = |unit: &str| {
        Command::new("systemctl")
            .args(["is-active", "--quiet", unit])
            .status()
            .is_ok_and(|s| s.success())
    };
    let init = Init {
        systemd: Path::new("/run/systemd/system").is_dir(),
        active: &active,
        scripts: Path::new("/etc/init.d"),
    };
    let argv = command(flavor, &init)?;
    let shown = argv.join(" ");
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| Error::Command {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_restarts_the_active_unit() {
        let only_agent = |unit: &str| unit == "k3s-agent";
        let init = Init {
            systemd: true,
            active: &only_agent,
            scripts: Path::new("/nonexistent"),
        };
        assert_eq!(
            command(Flavor::K3s, &init).unwrap(),
            ["systemctl", "restart", "k3s-agent"]
        );
        assert!(
            command(Flavor::Containerd, &init).is_err(),
            "containerd is not active"
        );
    }

    #[test]
    fn without_systemd_the_init_script_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let never = |_: &str| false;
        let init = Init {
            systemd: false,
            active: &never,
            scripts: dir.path(),
        };
        let err = command(Flavor::Containerd, &init).unwrap_err();
        assert!(
            err.to_string().contains("restart containerd yourself"),
            "{err}"
        );
        std::fs::write(dir.path().join("containerd"), "#!/bin/sh\n").unwrap();
        let script = dir.path().join("containerd").display().to_string();
        assert_eq!(
            command(Flavor::Containerd, &init).unwrap(),
            [script.as_str(), "restart"]
        );
    }
}
