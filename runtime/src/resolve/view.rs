//! The container's file system as its process sees it: the rootfs with the spec's mounts on
//! top, so a program delivered on a volume (a ConfigMap, an emptyDir an init container filled,
//! a hostPath) is found where the container will find it.
//!
//! Before the container exists its mounts do not either, so a [`View`] of a spec answers from
//! the mounts' sources: a bind mount's files are those of its host source, and any other file
//! system (tmpfs, proc, sysfs, …) is empty at that moment. A running container is seen through
//! its process's `/proc/<pid>/root`, where the kernel walks its real mounts.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

/// Where a container's paths lead: its root and the mounts that cover parts of it.
#[derive(Debug)]
pub struct View {
    root: PathBuf,
    /// The root, opened once when it must not be looked up again (a process's root: its pid
    /// could be reused once it is reaped).
    held: Option<OwnedFd>,
    /// In mount order: a later mount covers an earlier one at the same or a deeper place.
    mounts: Vec<Layer>,
}

#[derive(Debug, Clone)]
struct Layer {
    /// The mount point's components inside the container.
    at: Vec<String>,
    /// A bind mount's host source; `None` for a file system that is empty when the container
    /// is created (tmpfs) or that is never searched for programs (proc, sysfs, devpts, …).
    source: Option<PathBuf>,
}

impl View {
    /// The rootfs alone.
    pub fn rootfs(root: &Path) -> Self {
        View {
            root: root.to_path_buf(),
            held: None,
            mounts: Vec::new(),
        }
    }

    /// `rootfs` with `spec`'s mounts, as the container will see it once they are made.
    pub fn of_spec(spec: &Spec, rootfs: &Path) -> Self {
        let mounts = spec
            .mounts()
            .iter()
            .flatten()
            .filter_map(|m| {
                let at = components(m.destination())?;
                let options = m.options().as_deref().unwrap_or_default();
                let is_bind = m.typ().as_deref() == Some("bind")
                    || options.iter().any(|o| o == "bind" || o == "rbind");
                let source = m
                    .source()
                    .as_ref()
                    .filter(|s| is_bind && s.is_absolute())
                    .cloned();
                Some(Layer { at, source })
            })
            .collect();
        View {
            root: rootfs.to_path_buf(),
            held: None,
            mounts,
        }
    }

    /// A running container through its process `pid` (its init): the kernel resolves the
    /// container's own mounts, volumes included. Its root is opened now: check afterwards that
    /// `pid` was still that process (not reaped), and the view stays the container's.
    pub fn of_process(pid: i32) -> nix::Result<Self> {
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let held = open_dir_or_file(&root, true)?;
        Ok(View {
            root,
            held: Some(held),
            mounts: Vec::new(),
        })
    }

    /// The container's root on the host (for messages).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root descriptor, to check that the view can be opened at all.
    pub(super) fn open_root(&self) -> nix::Result<OwnedFd> {
        match &self.held {
            Some(fd) => fd
                .try_clone()
                .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(0))),
            None => open_dir_or_file(&self.root, true),
        }
    }

    /// `O_PATH | O_NOFOLLOW` of the absolute path `resolved` (components without `.`, `..` or
    /// symbolic links before the last one): inside the last mount that covers it, or the root.
    pub(super) fn open(&self, resolved: &[String]) -> nix::Result<Opened> {
        let covering = self
            .mounts
            .iter()
            .rev()
            .find(|layer| resolved.starts_with(&layer.at));
        let (base, rest) = match covering {
            Some(layer) => match &layer.source {
                Some(source) => (
                    open_dir_or_file(source, false)?,
                    &resolved[layer.at.len()..],
                ),
                // Empty when the container starts: only its mount point exists.
                None if resolved.len() == layer.at.len() => return Ok(Opened::EmptyMountPoint),
                None => return Err(nix::Error::ENOENT),
            },
            None => (self.open_root()?, resolved),
        };
        if rest.is_empty() {
            return Ok(Opened::Fd(base));
        }
        // Every component but the last was checked to be no symlink; the flags keep a
        // concurrent swap from leading anywhere else.
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_IN_ROOT
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS
                    | ResolveFlag::RESOLVE_NO_SYMLINKS,
            );
        let fd = openat2(base.as_raw_fd(), rest.join("/").as_str(), how)?;
        // SAFETY: `fd` was just returned by a successful open and is owned by no one else.
        Ok(Opened::Fd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// What a path of a [`View`] leads to.
pub(super) enum Opened {
    /// An `O_PATH` descriptor of the inode (a symlink itself when it is one).
    Fd(OwnedFd),
    /// The mount point of a file system that is empty when the container starts.
    EmptyMountPoint,
}

/// The normal components of an absolute container path; `None` for a relative one.
fn components(path: &Path) -> Option<Vec<String>> {
    if !path.is_absolute() {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => out.push(name.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// `O_PATH` of a host path the kubelet or the container's root gives (following its symlinks,
/// as the mount itself did).
fn open_dir_or_file(path: &Path, dir: bool) -> nix::Result<OwnedFd> {
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if dir {
        flags |= OFlag::O_DIRECTORY;
    }
    let fd = nix::fcntl::open(path, flags, Mode::empty())?;
    // SAFETY: `fd` was just returned by a successful open and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
