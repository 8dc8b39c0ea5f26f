//! A ready-made native image: a static busybox with one symlink per applet.

use std::path::Path;
use std::process::Command;

use crate::{ImageBuilder, ImageError};

/// The conventional PATH set in the image's environment.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";
const GROUP: &str = "root:x:0:\n";

/// An image holding `/bin/busybox` (copied from `busybox`, which must be statically linked),
/// a symlink `/bin/<applet> -> busybox` for each applet, the usual top-level directories,
/// a root entry in `/etc/passwd` and `/etc/group`, `PATH` and the command `/bin/sh`.
pub fn busybox_image(name: &str, busybox: &Path) -> Result<ImageBuilder, ImageError> {
    let applets = list_applets(busybox)?;
    let mut image = ImageBuilder::new(name)
        .add_host_file("/bin/busybox", busybox)?
        .add_dir("/proc", 0o555)
        .add_dir("/sys", 0o555)
        .add_dir("/dev", 0o755)
        .add_dir("/tmp", 0o1777)
        .add_dir("/etc", 0o755)
        .add_dir("/root", 0o700)
        .add_file("/etc/passwd", PASSWD.as_bytes().to_vec(), 0o644)
        .add_file("/etc/group", GROUP.as_bytes().to_vec(), 0o644)
        .env(vec![format!("PATH={DEFAULT_PATH}")])
        .cmd(vec!["/bin/sh".to_string()]);
    for applet in applets {
        image = image.add_symlink(&format!("/bin/{applet}"), "busybox");
    }
    Ok(image)
}

/// Runs `busybox --list` and returns the applet names (without `busybox` itself).
fn list_applets(busybox: &Path) -> Result<Vec<String>, ImageError> {
    let fail = |reason: String| ImageError::Busybox {
        path: busybox.to_path_buf(),
        reason,
    };
    let output = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| fail(format!("cannot run --list: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(fail(format!("--list failed ({}): {stderr}", output.status)));
    }
    let stdout = String::from_utf8(output.stdout)
        .map_err(|_| fail("--list printed non-UTF-8 output".to_string()))?;
    let mut applets = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains('/') || line == "." || line == ".." {
            return Err(fail(format!("unexpected applet name {line:?}")));
        }
        if line != "busybox" {
            applets.push(line.to_string());
        }
    }
    if applets.is_empty() {
        return Err(fail("--list printed no applets".to_string()));
    }
    Ok(applets)
}
