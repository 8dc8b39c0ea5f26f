//! Mounting the rootfs containerd hands us in `Create`, without forking: mount(2) is a plain
//! syscall, safe from the multi-threaded shim.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A rootfs mount or unmount that failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages show
pub enum MountError {
    /// mount(2) failed.
    #[error("mount {fstype} {device} on {target}: {errno}")]
    Mount {
        fstype: String,
        device: String,
        target: PathBuf,
        errno: nix::Error,
    },
    #[error("mount options for {target} exceed one page ({len} bytes); too many layers")]
    /// The overlay options (layer paths) do not fit in the page mount(2) takes.
    TooLong { target: PathBuf, len: usize },
    #[error("unmount {target}: {errno}")]
    /// umount2(2) failed.
    Unmount { target: PathBuf, errno: nix::Error },
}

/// One entry of containerd's `rootfs` list.
#[derive(Debug, Clone)]
pub struct RootfsMount {
    /// Filesystem type, e.g. `overlay`.
    pub fstype: String,
    /// What is mounted (the device or, for overlay, `overlay`).
    pub source: String,
    /// mount(8)-style options; flags like `ro` are turned into mount flags, the rest is data.
    pub options: Vec<String>,
}

fn flag(option: &str) -> Option<(bool, MsFlags)> {
    let f = match option {
        "ro" => (false, MsFlags::MS_RDONLY),
        "rw" => (true, MsFlags::MS_RDONLY),
        "bind" => (false, MsFlags::MS_BIND),
        "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
        "nosuid" => (false, MsFlags::MS_NOSUID),
        "suid" => (true, MsFlags::MS_NOSUID),
        "nodev" => (false, MsFlags::MS_NODEV),
        "dev" => (true, MsFlags::MS_NODEV),
        "noexec" => (false, MsFlags::MS_NOEXEC),
        "exec" => (true, MsFlags::MS_NOEXEC),
        "sync" => (false, MsFlags::MS_SYNCHRONOUS),
        "noatime" => (false, MsFlags::MS_NOATIME),
        "relatime" => (false, MsFlags::MS_RELATIME),
        "strictatime" => (false, MsFlags::MS_STRICTATIME),
        "nodiratime" => (false, MsFlags::MS_NODIRATIME),
        "remount" => (false, MsFlags::MS_REMOUNT),
        _ => return None,
    };
    Some(f)
}

/// Splits mount options into flags and the filesystem data string.
fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        match flag(option) {
            Some((true, f)) => flags.remove(f),
            Some((false, f)) => flags.insert(f),
            None => data.push(option.as_str()),
        }
    }
    (flags, data.join(","))
}

/// Mounts containerd's rootfs list on `target`, in order.
pub fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<(), MountError> {
    for m in mounts {
        let (flags, data) = parse_options(&m.options);
        if data.len() >= 4096 {
            return Err(MountError::TooLong {
                target: target.to_path_buf(),
                len: data.len(),
            });
        }
        let data = (!data.is_empty()).then_some(data.as_str());
        let fstype = (!m.fstype.is_empty() && m.fstype != "bind").then_some(m.fstype.as_str());
        let ro_bind = flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY);
        let err = |errno| MountError::Mount {
            fstype: m.fstype.clone(),
            device: m.source.clone(),
            target: target.to_path_buf(),
            errno,
        };
        mount(Some(m.source.as_str()), target, fstype, flags, data).map_err(err)?;
        if ro_bind {
            // A bind mount ignores MS_RDONLY until remounted.
            mount(
                None::<&str>,
                target,
                None::<&str>,
                flags | MsFlags::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(err)?;
        }
    }
    Ok(())
}

/// Unmounts the top `count` mounts stacked on `target` (those one caller made over someone
/// else's); fewer mounted is fine.
pub fn unmount_top(target: &Path, count: usize) -> Result<(), MountError> {
    for _ in 0..count {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(errno) => {
                return Err(MountError::Unmount {
                    target: target.to_path_buf(),
                    errno,
                })
            }
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target`; not mounted is fine.
pub fn unmount_all(target: &Path) -> Result<(), MountError> {
    loop {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(errno) => {
                return Err(MountError::Unmount {
                    target: target.to_path_buf(),
                    errno,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["ro", "nosuid", "lowerdir=/a:/b", "index=off", "rw"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = parse_options(&opts);
        assert_eq!(flags, MsFlags::MS_NOSUID);
        assert_eq!(data, "lowerdir=/a:/b,index=off");
    }
}
