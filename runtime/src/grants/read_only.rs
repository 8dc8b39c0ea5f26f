//! Making `:ro` preopens read-only mounts of the container, so a write fails with `EROFS`
//! (WASI's `rofs`) on every engine and for anything else the container runs.
//!
//! Each preopen is checked against the spec before the container exists:
//! - a volume's mount point: its mount gets `ro`;
//! - a directory of the image (no mount above it): a read-only bind mount of
//!   `<rootfs>/<path>` onto itself is added, before the spec's mounts beneath it. The path
//!   must not go through a symbolic link: nothing else writes this rootfs before the
//!   container starts, so what is checked now is what libcontainer mounts;
//! - inside a bind-mounted volume: usable `:rw`; refused `:ro`, as its source can be changed
//!   by whoever shares the volume between this check and the mount (mount the subpath as a
//!   volume of its own, read-only);
//! - inside any other mount (tmpfs and the like): refused, it is empty when the guest starts.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::{Mount, Spec};

use super::preopens::KERNEL_PATHS;
use super::{GrantError, Preopen, PREOPENS};

/// Changes `spec` so that each `:ro` preopen is a read-only mount; checks that every preopen
/// is a directory the guest will find. `rootfs` is the container's root on the host.
pub fn apply_read_only(
    spec: &mut Spec,
    rootfs: &Path,
    preopens: &[Preopen],
) -> Result<(), GrantError> {
    for preopen in preopens {
        apply_one(spec, rootfs, preopen)?;
    }
    cover_mounts_beneath(spec, preopens);
    Ok(())
}

/// A `:ro` preopen is read-only down to its last file: the volumes mounted beneath it are made
/// read-only too, unless a more specific `:rw` preopen holds them. `/proc`, `/sys` and `/dev`
/// are left alone (a guest never reaches them, and native processes need them as they are).
fn cover_mounts_beneath(spec: &mut Spec, preopens: &[Preopen]) {
    let Some(mut mounts) = spec.mounts().clone() else {
        return;
    };
    for mount in &mut mounts {
        let at = mount.destination().clone();
        if KERNEL_PATHS.iter().any(|k| at.starts_with(k)) {
            continue;
        }
        let holder = preopens
            .iter()
            .filter(|p| at.starts_with(&p.path))
            .max_by_key(|p| p.path.components().count());
        if holder.is_some_and(|p| !p.writable && at != p.path) {
            set_read_only(mount);
        }
    }
    spec.set_mounts(Some(mounts));
}

fn apply_one(spec: &mut Spec, rootfs: &Path, preopen: &Preopen) -> Result<(), GrantError> {
    let path = &preopen.path;
    let refuse = |reason: String| GrantError::Refused {
        key: PREOPENS,
        reason: format!("{}: {reason}", path.display()),
    };
    if path == Path::new("/") {
        if !preopen.writable {
            let mut root = spec.root().clone().unwrap_or_default();
            root.set_readonly(Some(true));
            spec.set_root(Some(root));
        }
        return Ok(());
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    // The last mount at or above the path is the one the guest sees it in.
    let covering = mounts
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| path.starts_with(m.destination()))
        .map(|(i, m)| (i, m.destination() == path, bind_source(m)));
    match covering {
        Some((index, true, _)) => {
            if !preopen.writable {
                set_read_only(&mut mounts[index]);
            }
        }
        Some((index, false, Some(source))) => {
            let rest = path
                .strip_prefix(mounts[index].destination())
                .unwrap_or(path);
            check_directory(&source, rest).map_err(|e| {
                refuse(format!(
                    "in the volume at {}: {e}",
                    mounts[index].destination().display()
                ))
            })?;
            if !preopen.writable {
                return Err(refuse(format!(
                    "a read-only preopen inside the volume at {} must be its mount point \
                     (mount that directory as a read-only volume of its own)",
                    mounts[index].destination().display()
                )));
            }
        }
        Some((index, false, None)) => {
            return Err(refuse(format!(
                "inside the {} mount at {}, which is empty when the container starts",
                mounts[index].typ().as_deref().unwrap_or("unknown"),
                mounts[index].destination().display()
            )));
        }
        None => {
            let rest = path.strip_prefix("/").unwrap_or(path);
            check_directory(rootfs, rest).map_err(|e| refuse(format!("in the image: {e}")))?;
            if !preopen.writable {
                let at = mounts
                    .iter()
                    .position(|m| m.destination().starts_with(path))
                    .unwrap_or(mounts.len());
                mounts.insert(at, read_only_bind(rootfs.join(rest), path.clone()));
            }
        }
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// A bind mount's absolute host source.
fn bind_source(mount: &Mount) -> Option<PathBuf> {
    let options = mount.options().as_deref().unwrap_or_default();
    let bind = mount.typ().as_deref() == Some("bind")
        || options.iter().any(|o| o == "bind" || o == "rbind");
    mount
        .source()
        .as_ref()
        .filter(|s| bind && s.is_absolute())
        .cloned()
}

fn set_read_only(mount: &mut Mount) {
    let mut options: Vec<String> = mount
        .options()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o != "rw" && o != "ro")
        .collect();
    options.push("ro".to_string());
    mount.set_options(Some(options));
}

fn read_only_bind(source: PathBuf, destination: PathBuf) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(destination);
    mount.set_typ(Some("bind".to_string()));
    mount.set_source(Some(source));
    mount.set_options(Some(vec!["rbind".into(), "ro".into()]));
    mount
}

/// `base/rest` is a directory reached without symbolic links and without leaving `base`.
fn check_directory(base: &Path, rest: &Path) -> Result<OwnedFd, String> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(
            ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let base_fd = nix::fcntl::open(
        base,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", base.display()))?;
    let target = if rest.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rest
    };
    let fd = openat2(base_fd, target, how).map_err(|e| match e {
        nix::Error::ENOENT => "does not exist".to_string(),
        nix::Error::ENOTDIR => "is not a directory".to_string(),
        nix::Error::ELOOP => "goes through a symbolic link".to_string(),
        nix::Error::EXDEV => "leaves its file system root".to_string(),
        other => other.to_string(),
    })?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Grants;

    fn preopens(value: &str) -> Vec<Preopen> {
        Grants::from_annotations([(PREOPENS, value)])
            .unwrap()
            .preopens
            .unwrap()
    }

    fn spec_with_volume(source: &Path) -> Spec {
        let mut spec = crate::spec::example();
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        let mut volume = Mount::default();
        volume.set_destination("/vol".into());
        volume.set_typ(Some("bind".into()));
        volume.set_source(Some(source.to_path_buf()));
        volume.set_options(Some(vec!["rbind".into(), "rw".into()]));
        mounts.push(volume);
        spec.set_mounts(Some(mounts));
        spec
    }

    fn mount_at<'a>(spec: &'a Spec, at: &str) -> Vec<&'a Mount> {
        spec.mounts()
            .iter()
            .flatten()
            .filter(|m| m.destination() == Path::new(at))
            .collect()
    }

    #[test]
    fn volumes_and_image_directories() {
        let rootfs = tempfile::tempdir().unwrap();
        let volume = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(rootfs.path().join("data/sub")).unwrap();
        std::fs::create_dir_all(volume.path().join("inner")).unwrap();
        std::os::unix::fs::symlink("/etc", rootfs.path().join("link")).unwrap();
        std::fs::write(rootfs.path().join("file"), "x").unwrap();
        let mut spec = spec_with_volume(volume.path());

        apply_read_only(
            &mut spec,
            rootfs.path(),
            &preopens("/vol:ro,/data:ro,/vol/inner:rw,/data/sub:rw"),
        )
        .unwrap();
        let vol = mount_at(&spec, "/vol");
        assert_eq!(vol.len(), 1);
        assert_eq!(vol[0].options().as_deref().unwrap(), ["rbind", "ro"]);
        let data = mount_at(&spec, "/data");
        assert_eq!(data.len(), 1);
        assert_eq!(
            data[0].source().as_deref(),
            Some(rootfs.path().join("data").as_path())
        );
        assert_eq!(data[0].options().as_deref().unwrap(), ["rbind", "ro"]);

        for (value, wanted) in [
            ("/vol/inner:ro", "must be its mount point"),
            ("/vol/missing:rw", "in the volume at /vol: does not exist"),
            ("/missing:ro", "in the image: does not exist"),
            ("/link:ro", "goes through a symbolic link"),
            ("/link/ssl:rw", "goes through a symbolic link"),
            ("/file:ro", "is not a directory"),
        ] {
            let err = apply_read_only(&mut spec, rootfs.path(), &preopens(value))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("annotation wasmpod.io/preopens: /"),
                "{value}: {err}"
            );
            assert!(err.contains(wanted), "{value}: {err}");
        }
    }

    #[test]
    fn read_only_root() {
        let rootfs = tempfile::tempdir().unwrap();
        let mut spec = crate::spec::example();
        apply_read_only(&mut spec, rootfs.path(), &preopens("/:ro")).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    }

    #[test]
    fn a_bind_goes_before_the_mounts_beneath_it() {
        let rootfs = tempfile::tempdir().unwrap();
        let volume = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(rootfs.path().join("vol")).unwrap();
        let mut spec = spec_with_volume(volume.path());
        // `/` is not a preopen target here; the image's parent of the volume is.
        let mut spec_parent = spec.clone();
        let mut mounts = spec_parent.mounts().clone().unwrap();
        let last = mounts.len() - 1;
        mounts[last].set_destination("/srv/vol".into());
        spec_parent.set_mounts(Some(mounts));
        std::fs::create_dir_all(rootfs.path().join("srv/vol")).unwrap();
        apply_read_only(&mut spec_parent, rootfs.path(), &preopens("/srv:ro")).unwrap();
        let order: Vec<_> = spec_parent
            .mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().display().to_string())
            .filter(|d| d.starts_with("/srv"))
            .collect();
        assert_eq!(order, ["/srv", "/srv/vol"]);
        apply_read_only(&mut spec, rootfs.path(), &preopens("/vol:rw")).unwrap();
    }

    #[test]
    fn read_only_covers_the_volumes_beneath() {
        let rootfs = tempfile::tempdir().unwrap();
        let volume = tempfile::tempdir().unwrap();
        let mut spec = spec_with_volume(volume.path());
        let mut mounts = spec.mounts().clone().unwrap();
        let mut rw = mounts.last().unwrap().clone();
        rw.set_destination("/rw".into());
        mounts.push(rw);
        spec.set_mounts(Some(mounts));
        apply_read_only(&mut spec, rootfs.path(), &preopens("/:ro,/rw:rw")).unwrap();
        let mode = |at: &str| mount_at(&spec, at)[0].options().clone().unwrap_or_default();
        assert!(mode("/vol").contains(&"ro".to_string()));
        assert!(mode("/rw").contains(&"rw".to_string()));
        assert!(!mode("/proc").contains(&"ro".to_string()));
    }
}
