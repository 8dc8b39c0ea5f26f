//! The busybox image, from the host's real `/bin/busybox` (Debian's busybox-static).

mod common;

use std::path::Path;

use anyhow::Result;
use serde_json::json;
use tar::EntryType;
use wasmpod_oci_image::{busybox_image, ImageError, DEFAULT_PATH};

use common::{find, Layout};

const BUSYBOX: &str = "/bin/busybox";

#[test]
fn busybox_image_has_applet_symlinks() -> Result<()> {
    anyhow::ensure!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install Debian's busybox-static (`make deps` does)"
    );
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("busybox.tar");
    busybox_image("docker.io/wasmpod/busybox:latest", Path::new(BUSYBOX))?.write_tar(&out)?;
    let layout = Layout::read(&out)?;
    let entries = layout.layer_entries()?;

    let sh = find(&entries, "bin/sh")?;
    assert_eq!(sh.kind, EntryType::Symlink);
    assert_eq!(sh.link.as_deref(), Some("busybox"));
    let echo = find(&entries, "bin/echo")?;
    assert_eq!(echo.kind, EntryType::Symlink);
    let binary = find(&entries, "bin/busybox")?;
    assert_eq!(binary.kind, EntryType::Regular);
    assert_eq!(binary.data, std::fs::read(BUSYBOX)?);
    for dir_path in ["proc", "sys", "dev", "tmp", "etc", "bin"] {
        assert_eq!(
            find(&entries, dir_path)?.kind,
            EntryType::Directory,
            "{dir_path}"
        );
    }
    let passwd = String::from_utf8(find(&entries, "etc/passwd")?.data.clone())?;
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    let bin_pos = entries.iter().position(|e| e.path == "bin");
    let sh_pos = entries.iter().position(|e| e.path == "bin/sh");
    assert!(bin_pos < sh_pos);
    assert_eq!(
        layout.config["config"]["Env"],
        json!([format!("PATH={DEFAULT_PATH}")])
    );
    Ok(())
}

#[test]
fn missing_busybox_is_an_error() {
    let result = busybox_image("x", Path::new("/nonexistent/busybox"));
    assert!(matches!(result, Err(ImageError::Busybox { .. })));
}
