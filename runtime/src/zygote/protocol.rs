//! Messages between the shim and its zygote. One request per SEQPACKET message; the reply
//! goes back on a socket passed along with the request (SCM_RIGHTS), so callers never share one.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
        error: String,
    },
}
