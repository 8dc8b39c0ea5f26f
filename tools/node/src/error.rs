//! What can go wrong; every variant names the file or command it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid TOML: {message}", path = path.display())]
    Parse { path: PathBuf, message: String },
    #[error(
        "{path}: config version {found} is not supported: wasmpod-node handles version 2 \
         (containerd 1.6/1.7) and version 3 (containerd 2.x){hint}",
        path = path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: String,
        hint: &'static str,
    },
    #[error(
        "{path}: runtime handler `{handler}` is already registered with runtime_type \
         `{existing}`, not wasmpod's `{wanted}`; pick another name with --handler NAME=ENGINE",
        path = path.display()
    )]
    HandlerTaken {
        path: PathBuf,
        handler: String,
        existing: String,
        wanted: String,
    },
    #[error("{path}: {what} is not a table; wasmpod-node cannot add runtimes under it", path = path.display())]
    UnexpectedLayout { path: PathBuf, what: String },
    #[error("{path}: read-only: {source}", path = path.display())]
    ReadOnly {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid handler `{0}`: expected NAME or NAME=ENGINE (letters, digits, `-`, `_`; engine in lower case, e.g. wasmtime)")]
    BadHandler(String),
    #[error("{path}: shim binary missing (build the shims, or unpack a release tarball there, and pass it with --shim-dir)", path = path.display())]
    MissingBinary { path: PathBuf },
    #[error("{path}: cannot add a drop-in: {reason}", path = path.display())]
    DropIn { path: PathBuf, reason: String },
    #[error(
        "{path}: changed since wasmpod-node installed it; the original is kept at {backup}. \
         Restore by hand, or pass --force to put the original back anyway",
        path = path.display(),
        backup = backup.display()
    )]
    ChangedSinceInstall { path: PathBuf, backup: PathBuf },
    #[error("{path}: wasmpod-node state is unreadable: {message}", path = path.display())]
    State { path: PathBuf, message: String },
    #[error("nothing installed: no {path}", path = path.display())]
    NotInstalled { path: PathBuf },
    #[error("no containerd config found (looked at {looked}); pass --config")]
    NoConfig { looked: String },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("containerd rejects the new config, which was rolled back: {0}")]
    Rejected(String),
    #[error("{cause}; undoing the install failed too: {failures}")]
    RollbackIncomplete { cause: Box<Error>, failures: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
