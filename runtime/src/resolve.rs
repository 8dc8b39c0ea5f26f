//! Finding a container's program inside its rootfs, as the container will see it.
//!
//! Paths are opened with `openat2(RESOLVE_IN_ROOT)`, so `..` and absolute symlinks (busybox's
//! applet links, for example) resolve inside the rootfs and never reach the host.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot open rootfs {path}: {source}")]
    Rootfs { path: PathBuf, source: nix::Error },
    #[error("{arg0:?} not found in rootfs {rootfs} (searched PATH={path_var})")]
    NotFound {
        arg0: String,
        rootfs: PathBuf,
        path_var: String,
    },
    #[error("{path} in rootfs: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// An opened program file and its absolute path inside the container.
#[derive(Debug)]
pub struct Program {
    pub path: String,
    pub file: File,
}

impl Program {
    pub fn is_executable(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    }

    /// Up to `n` leading bytes of the file.
    pub fn head(&self, n: usize) -> Result<Vec<u8>, ResolveError> {
        let mut buf = Vec::with_capacity(n);
        (&self.file)
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|source| self.io(source))?;
        Ok(buf)
    }

    pub fn read_all(&self) -> Result<Vec<u8>, ResolveError> {
        let mut file = self.file.try_clone().map_err(|source| self.io(source))?;
        let mut buf = Vec::new();
        std::io::Seek::rewind(&mut file).map_err(|source| self.io(source))?;
        file.read_to_end(&mut buf)
            .map_err(|source| self.io(source))?;
        Ok(buf)
    }

    fn io(&self, source: std::io::Error) -> ResolveError {
        ResolveError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// Resolves `arg0` the way `execvp` inside the container would: as a path when it contains a
/// `/`, else through each directory of `path_var`. Only regular files match.
pub fn find_program(rootfs: &Path, arg0: &str, path_var: &str) -> Result<Program, ResolveError> {
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| ResolveError::Rootfs {
        path: rootfs.to_path_buf(),
        source,
    })?;
    let root = unsafe_owned(root);

    let candidates: Vec<String> = if arg0.contains('/') {
        vec![arg0.to_string()]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{arg0}", d.trim_end_matches('/')))
            .collect()
    };
    for candidate in candidates {
        if let Some(file) = open_in_root(&root, &candidate) {
            if file.metadata().is_ok_and(|m| m.is_file()) {
                let path = if candidate.starts_with('/') {
                    candidate
                } else {
                    format!("/{candidate}")
                };
                return Ok(Program { path, file });
            }
        }
    }
    Err(ResolveError::NotFound {
        arg0: arg0.to_string(),
        rootfs: rootfs.to_path_buf(),
        path_var: path_var.to_string(),
    })
}

fn open_in_root(root: &OwnedFd, path: &str) -> Option<File> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.as_raw_fd(), path, how).ok()?;
    Some(File::from(unsafe_owned(fd)))
}

fn unsafe_owned(fd: std::os::fd::RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` was just returned by a successful open and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/busybox"), b"\x7fELF....").unwrap();
        symlink("/bin/busybox", dir.path().join("bin/echo")).unwrap();
        symlink("/etc/passwd", dir.path().join("escape")).unwrap();
        dir
    }

    #[test]
    fn absolute_symlink_stays_in_rootfs() {
        let root = rootfs();
        let p = find_program(root.path(), "echo", "/usr/bin:/bin").unwrap();
        assert_eq!(p.path, "/bin/echo");
        assert_eq!(p.head(4).unwrap(), b"\x7fELF");
    }

    #[test]
    fn symlink_to_host_file_is_not_followed_out() {
        let root = rootfs();
        let err = find_program(root.path(), "/escape", "/bin").unwrap_err();
        assert!(matches!(err, ResolveError::NotFound { .. }), "{err}");
    }

    #[test]
    fn missing_program_names_path_searched() {
        let root = rootfs();
        let err = find_program(root.path(), "nope", "/bin")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"nope\" not found") && err.contains("PATH=/bin"),
            "{err}"
        );
    }
}
