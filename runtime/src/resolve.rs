//! Finding a container's program in the container's own view (its rootfs and volumes, a
//! [`View`]), and opening it safely from the host.
//!
//! The rootfs and volumes belong to the tenant, so a path is walked one component at a time,
//! each opened `O_PATH | O_NOFOLLOW` under `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)`
//! and symlinks followed by hand: `..` and absolute symlinks (busybox's applet links, for
//! example) resolve inside the container's view and never reach the host, and nothing is
//! opened for reading (a FIFO would block, a device would act) before `fstat` says it is a
//! regular file of acceptable size. Only then is it reopened for reading through
//! `/proc/self/fd/N`, which reaches the very inode that was checked.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::OnceLock;

use std::collections::VecDeque;

use nix::fcntl::{readlinkat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC, SYSFS_MAGIC};

mod view;

use view::Opened;
pub use view::View;

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
    view: &View,
    arg0: &str,
    path_var: &str,
) -> Result<Program, ResolveError> {
    view.open_root().map_err(|source| ResolveError::Rootfs {
        path: view.root().to_path_buf(),
        source,
    })?;
    let not_found = || ResolveError::NotFound {
        arg0: arg0.to_string(),
        rootfs: view.root().to_path_buf(),
        path_var: path_var.to_string(),
    };
    if arg0.contains('/') {
        return open_program(view, &absolute(arg0))?.ok_or_else(not_found);
    }
    if arg0.is_empty() {
        return Err(not_found());
    }
    let mut first_refusal = None;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = absolute(&format!("{}/{arg0}", dir.trim_end_matches('/')));
        match open_program(view, &candidate) {
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

/// Opens `path` (absolute, inside the container) as a checked [`Program`]; `None` when it does
/// not exist.
fn open_program(view: &View, path: &str) -> Result<Option<Program>, ResolveError> {
    let io = |source: nix::Error| ResolveError::Io {
        path: path.to_string(),
        source: source.into(),
    };
    let not_regular = |kind| ResolveError::NotRegular {
        path: path.to_string(),
        kind,
    };
    let Some(fd) = walk(view, path)? else {
        return Ok(None);
    };
    let stat = fstat(fd.as_raw_fd()).map_err(io)?;
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
        return Err(not_regular(kind));
    }
    // A running container's /proc and /sys are real: their files act when read (and may block).
    let fs = fstatfs(&fd).map_err(io)?.filesystem_type();
    if [PROC_SUPER_MAGIC, SYSFS_MAGIC].contains(&fs) {
        return Err(not_regular("file of /proc or /sys"));
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

/// Walks `path` one component at a time through `view`, following symbolic links as the
/// container's kernel would (an absolute target starts again at the container's root, which
/// may lead onto a volume), and returns the final inode's `O_PATH` descriptor, `None` when
/// nothing is there. Nothing is ever followed outside the container's view.
fn walk(view: &View, path: &str) -> Result<Option<OwnedFd>, ResolveError> {
    let mut todo: VecDeque<String> = split(path).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    let mut last = None;
    while let Some(name) = todo.pop_front() {
        match name.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                last = None;
                continue;
            }
            _ => resolved.push(name),
        }
        let fd = match view.open(&resolved) {
            Ok(Opened::Fd(fd)) => fd,
            Ok(Opened::EmptyMountPoint) if todo.is_empty() => {
                return Err(ResolveError::NotRegular {
                    path: path.to_string(),
                    kind: "directory",
                })
            }
            Ok(Opened::EmptyMountPoint) => return Ok(None),
            Err(nix::Error::ENOENT | nix::Error::ENOTDIR) => return Ok(None),
            Err(nix::Error::ELOOP) => {
                return Err(ResolveError::Eloop {
                    path: path.to_string(),
                })
            }
            Err(source) => {
                return Err(ResolveError::Io {
                    path: path.to_string(),
                    source: source.into(),
                })
            }
        };
        let stat = fstat(fd.as_raw_fd()).map_err(|source| ResolveError::Io {
            path: path.to_string(),
            source: source.into(),
        })?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
            last = Some(fd);
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(ResolveError::SymlinkLoop {
                path: path.to_string(),
            });
        }
        // /proc's links (`self`, `<pid>/root`, `<pid>/fd/N`) lead to other processes' views:
        // never followed, as RESOLVE_NO_MAGICLINKS would refuse them.
        if fstatfs(&fd).is_ok_and(|fs| fs.filesystem_type() == PROC_SUPER_MAGIC) {
            return Err(ResolveError::Eloop {
                path: path.to_string(),
            });
        }
        // An empty path reads the link an O_PATH descriptor refers to.
        let target = readlinkat(Some(fd.as_raw_fd()), "").map_err(|source| ResolveError::Io {
            path: path.to_string(),
            source: source.into(),
        })?;
        let target = target.to_string_lossy();
        resolved.pop();
        if target.starts_with('/') {
            resolved.clear();
        }
        for name in split(&target).rev() {
            todo.push_front(name);
        }
        last = None;
    }
    match last {
        Some(fd) => Ok(Some(fd)),
        // The path named the root itself, or ended in `..`/a link to a directory: open what
        // it resolved to (a directory, refused by the caller).
        None => match view.open(&resolved) {
            Ok(Opened::Fd(fd)) => Ok(Some(fd)),
            Ok(Opened::EmptyMountPoint) => Err(ResolveError::NotRegular {
                path: path.to_string(),
                kind: "directory",
            }),
            Err(_) => Ok(None),
        },
    }
}

fn split(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
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
