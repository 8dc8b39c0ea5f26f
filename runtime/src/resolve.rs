//! Finding a container's program inside its rootfs, as the container will see it, and opening
//! it safely from the host.
//!
//! The rootfs belongs to the tenant, so every path is opened `O_PATH | O_NOFOLLOW` under
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `..` and absolute symlinks (busybox's
//! applet links, for example) resolve inside the rootfs and never reach the host, and nothing
//! is opened for reading (a FIFO would block, a device would act) before `fstat` says it is a
//! regular file of acceptable size. Only then is it reopened for reading through
//! `/proc/self/fd/N`, which reaches the very inode that was checked.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::{openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

/// Environment variable of the shim: the largest program file it reads from a rootfs.
pub const MAX_MODULE_BYTES_ENV: &str = "WASMPOD_MAX_MODULE_BYTES";
/// Default for [`MAX_MODULE_BYTES_ENV`], the same as for wasm image layers.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 256 << 20;
/// Symlinks followed in the last component before giving up (as Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Why a program could not be found or opened safely; each names the path (inside the
/// container) and the cause.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages show
pub enum ResolveError {
    #[error("cannot open rootfs {path}: {source}")]
    /// The rootfs itself could not be opened.
    Rootfs { path: PathBuf, source: nix::Error },
    #[error("{arg0:?} not found in rootfs {rootfs} (searched PATH={path_var})")]
    /// Not in the rootfs (a relative name is searched along the spec's PATH).
    NotFound {
        arg0: String,
        rootfs: PathBuf,
        path_var: String,
    },
    #[error("{path}: is a {kind}, not a regular file")]
    /// A FIFO, socket, device or directory.
    NotRegular { path: String, kind: &'static str },
    #[error("{path}: {size} bytes, more than the limit of {limit} bytes ({MAX_MODULE_BYTES_ENV})")]
    /// Larger than [`max_module_bytes`].
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path}: too many levels of symbolic links")]
    /// More than [`MAX_SYMLINK_HOPS`] symbolic links.
    SymlinkLoop { path: String },
    #[error(
        "{path}: too many levels of symbolic links (or a /proc magic link, which is never followed)"
    )]
    /// The kernel's ELOOP: a symlink loop or a `/proc` magic link.
    Eloop { path: String },
    #[error("{path}: changed while it was being opened (refusing it)")]
    /// The file changed between its check and its use.
    Replaced { path: String },
    #[error("{path} in rootfs: {source}")]
    /// Any other I/O error.
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The largest program file read from a rootfs: `$WASMPOD_MAX_MODULE_BYTES` (a bad value is
/// logged once and [`DEFAULT_MAX_MODULE_BYTES`] used).
pub fn max_module_bytes() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| parse_limit(std::env::var_os(MAX_MODULE_BYTES_ENV).as_deref()))
}

fn parse_limit(raw: Option<&std::ffi::OsStr>) -> u64 {
    let Some(raw) = raw else {
        return DEFAULT_MAX_MODULE_BYTES;
    };
    match raw.to_str().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(n) if n > 0 => n,
        _ => {
            tracing::warn!(
                value = ?raw,
                default = DEFAULT_MAX_MODULE_BYTES,
                "{MAX_MODULE_BYTES_ENV} is not a positive number of bytes; using the default"
            );
            DEFAULT_MAX_MODULE_BYTES
        }
    }
}

/// An opened program file and its absolute path inside the container: a regular file, open
/// read-only. Its size is checked against [`max_module_bytes`] before it is read whole
/// ([`Program::check_size`]).
#[derive(Debug)]
pub(crate) struct Program {
    pub path: String,
    /// Open `O_RDONLY | O_CLOEXEC`; read it with positioned reads (`head`, `read_all`).
    pub file: File,
    /// The size `fstat` reported when the file was checked.
    pub size: u64,
}

impl Program {
    /// Whether any execute bit is set.
    pub fn is_executable(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    }

    /// Up to `n` leading bytes of the file, read at offset 0 (the file offset does not move).
    pub fn head(&self, n: usize) -> Result<Vec<u8>, ResolveError> {
        let n = n.min(usize::try_from(self.size).unwrap_or(usize::MAX));
        self.read_at_most(n)
    }

    /// Fails unless the file is within [`max_module_bytes`]: required before the shim holds
    /// it whole (a module to compile). A native program is never read whole, so it may be
    /// of any size (the kernel maps it inside the container).
    pub fn check_size(&self) -> Result<(), ResolveError> {
        self.check_size_against(max_module_bytes())
    }

    fn check_size_against(&self, limit: u64) -> Result<(), ResolveError> {
        if self.size > limit {
            return Err(ResolveError::TooLarge {
                path: self.path.clone(),
                size: self.size,
                limit,
            });
        }
        Ok(())
    }

    /// The whole file as checked: at most [`Program::size`] bytes, even if it grew since, and
    /// only within [`max_module_bytes`]. Modules are streamed to the compiler instead; tests
    /// use it.
    #[cfg(test)]
    pub fn read_all(&self) -> Result<Vec<u8>, ResolveError> {
        self.check_size()?;
        let n = usize::try_from(self.size).map_err(|_| ResolveError::TooLarge {
            path: self.path.clone(),
            size: self.size,
            limit: max_module_bytes(),
        })?;
        self.read_at_most(n)
    }

    fn read_at_most(&self, n: usize) -> Result<Vec<u8>, ResolveError> {
        let mut buf = vec![0u8; n];
        let mut filled = 0;
        while filled < n {
            match self.file.read_at(&mut buf[filled..], filled as u64) {
                Ok(0) => break,
                Ok(k) => filled += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(self.io(source)),
            }
        }
        buf.truncate(filled);
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
/// `/`, else through each directory of `path_var`. A path names its own failure (not a regular
/// file, a symlink loop); a PATH search skips what cannot be run and reports the
/// first such candidate only when nothing runnable was found.
pub(crate) fn find_program(
    rootfs: &Path,
    arg0: &str,
    path_var: &str,
) -> Result<Program, ResolveError> {
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| ResolveError::Rootfs {
        path: rootfs.to_path_buf(),
        source,
    })?;
    // SAFETY: `root` was just returned by a successful open and is owned by no one else.
    let root = unsafe { OwnedFd::from_raw_fd(root) };

    let not_found = || ResolveError::NotFound {
        arg0: arg0.to_string(),
        rootfs: rootfs.to_path_buf(),
        path_var: path_var.to_string(),
    };
    if arg0.contains('/') {
        return open_program(&root, &absolute(arg0))?.ok_or_else(not_found);
    }
    if arg0.is_empty() {
        return Err(not_found());
    }
    let mut first_refusal = None;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = absolute(&format!("{}/{arg0}", dir.trim_end_matches('/')));
        match open_program(&root, &candidate) {
            Ok(Some(program)) => return Ok(program),
            Ok(None) => {}
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    Err(first_refusal.unwrap_or_else(not_found))
}

fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// Opens `path` (absolute, inside `root`) as a checked [`Program`]; `None` when it does not exist.
fn open_program(root: &OwnedFd, path: &str) -> Result<Option<Program>, ResolveError> {
    let io = |source: nix::Error| ResolveError::Io {
        path: path.to_string(),
        source: source.into(),
    };
    let mut current = path.to_string();
    let mut hops = 0;
    let (fd, stat) = loop {
        let fd = match open_path(root, &current) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT | nix::Error::ENOTDIR) => return Ok(None),
            Err(nix::Error::ELOOP) => {
                return Err(ResolveError::Eloop {
                    path: path.to_string(),
                })
            }
            Err(e) => return Err(io(e)),
        };
        let stat = fstat(fd.as_raw_fd()).map_err(io)?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
            break (fd, stat);
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(ResolveError::SymlinkLoop {
                path: path.to_string(),
            });
        }
        // An empty path reads the link an O_PATH descriptor refers to.
        let target = readlinkat(Some(fd.as_raw_fd()), "").map_err(io)?;
        let target = target.to_string_lossy();
        current = if target.starts_with('/') {
            target.into_owned()
        } else {
            // Relative to the link's directory; the kernel resolves `..` and intermediate
            // links of the joined path inside the root, as it would have for the link itself.
            let dir = current.rsplit_once('/').map_or("", |(dir, _)| dir);
            format!("{dir}/{target}")
        };
    };
    let kind = match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => None,
        SFlag::S_IFIFO => Some("FIFO"),
        SFlag::S_IFSOCK => Some("socket"),
        SFlag::S_IFCHR => Some("character device"),
        SFlag::S_IFBLK => Some("block device"),
        SFlag::S_IFDIR => Some("directory"),
        _ => Some("special file"),
    };
    if let Some(kind) = kind {
        return Err(ResolveError::NotRegular {
            path: path.to_string(),
            kind,
        });
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    let file = reopen_for_reading(&fd).map_err(io)?;
    let meta = file.metadata().map_err(|source| ResolveError::Io {
        path: path.to_string(),
        source,
    })?;
    if meta.dev() != stat.st_dev || meta.ino() != stat.st_ino || !meta.is_file() {
        return Err(ResolveError::Replaced {
            path: path.to_string(),
        });
    }
    Ok(Some(Program {
        path: path.to_string(),
        file,
        size,
    }))
}

/// `O_PATH | O_NOFOLLOW` of `path` inside `root`: nothing is read and no device or FIFO acts.
fn open_path(root: &OwnedFd, path: &str) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.as_raw_fd(), path, how)?;
    // SAFETY: `fd` was just returned by a successful open and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A readable descriptor of the inode an `O_PATH` descriptor refers to.
fn reopen_for_reading(fd: &impl AsFd) -> nix::Result<File> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    let raw = nix::fcntl::open(
        proc_path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )?;
    // SAFETY: `raw` was just returned by a successful open and is owned by no one else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(raw) }))
}

#[cfg(test)]
mod tests;
