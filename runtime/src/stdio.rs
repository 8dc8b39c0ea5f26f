//! Opening containerd's stdio FIFOs for the container's init process.

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("opening stdio {path}: {source}")]
pub struct StdioError {
    path: PathBuf,
    source: std::io::Error,
}

#[derive(Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

fn clear_nonblock(file: &File) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    let flags = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(())
}

fn open(path: &Path, write: bool) -> Result<OwnedFd, StdioError> {
    let err = |source| StdioError {
        path: path.to_path_buf(),
        source,
    };
    // Non-blocking so a FIFO without a peer cannot hang us; the container gets a blocking fd.
    let mut opts = OpenOptions::new();
    opts.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC);
    let file = if write && is_fifo(path) {
        // Read-write: the FIFO then always has a reader, so the container never gets EPIPE (or
        // dies of SIGPIPE) while containerd is restarting; writes block once the pipe is full
        // and resume when containerd reopens the FIFO. Also never blocks or fails with ENXIO
        // before containerd has opened its end.
        opts.read(true).write(true).open(path)
    } else if write {
        opts.write(true).open(path)
    } else {
        opts.read(true).open(path)
    }
    .map_err(err)?;
    clear_nonblock(&file).map_err(err)?;
    Ok(file.into())
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

fn open_opt(path: &Option<PathBuf>, write: bool) -> Result<Option<OwnedFd>, StdioError> {
    match path {
        Some(p) if !p.as_os_str().is_empty() => open(p, write).map(Some),
        _ => Ok(None),
    }
}

impl Stdio {
    /// Opens the given FIFOs (or files); an empty or missing path means /dev/null.
    pub fn open(
        stdin: &Option<PathBuf>,
        stdout: &Option<PathBuf>,
        stderr: &Option<PathBuf>,
    ) -> Result<Self, StdioError> {
        let pick = |path: &Option<PathBuf>, write| match open_opt(path, write)? {
            Some(fd) => Ok(Some(fd)),
            None => open(Path::new("/dev/null"), write).map(Some),
        };
        Ok(Self {
            stdin: pick(stdin, false)?,
            stdout: pick(stdout, true)?,
            stderr: pick(stderr, true)?,
        })
    }
}
