//! Messages between the shim and its zygote. One request per SEQPACKET message; the reply
//! goes back on a socket passed along with the request (SCM_RIGHTS), so callers never share one.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ErrorKind;

/// Largest request or reply we accept.
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: String,
    /// libcontainer's bundle: holds the effective `config.json`.
    pub bundle: PathBuf,
    /// libcontainer's state root; the container's state lives in `<root>/<id>`.
    pub root: PathBuf,
    pub stdin: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    pub systemd_cgroup: bool,
    pub workload: PreparedWorkload,
    /// Set for an exec: run this process.json in the running container `id` (libcontainer's
    /// tenant builder) instead of creating the container.
    pub exec_process: Option<PathBuf>,
    /// Set for a process with a terminal: libcontainer's console socket, where the process's
    /// init sends the pty master it made; the stdio paths are then not used.
    #[serde(default)]
    pub console_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PreparedWorkload {
    Native,
    Wasm {
        /// Compiled artifact from the node's module cache.
        artifact: PathBuf,
        /// sha256 of the module source (hex): the entry must be this module's.
        module_sha256: String,
        module_path: String,
        func: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CreateReply {
    Created {
        pid: i32,
        /// The wasm module was already loaded in the zygote for an earlier container.
        module_reused: bool,
    },
    Failed {
        /// How the shim reports it (see [`ErrorKind`]).
        kind: ErrorKind,
        /// The error chain, as the user reads it.
        error: String,
    },
}

/// A failure in the zygote or a worker, on its way into [`CreateReply::Failed`].
#[derive(Debug)]
pub(super) struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    /// A failure of the node (I/O, a process, the engine).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A failure caused by the container's spec or module.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The same failure, its message prefixed with `context: `.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        Self::new(self.kind, format!("{context}: {}", self.message))
    }

    pub fn into_reply(self) -> CreateReply {
        CreateReply::Failed {
            kind: self.kind,
            error: self.message,
        }
    }
}
