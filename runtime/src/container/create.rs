//! `Create`: everything that can fail on bad input happens here, before a process exists, so
//! the error reaches the `ctr` user fast and nothing is left behind.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::compile::{CompileError, SourceError};
use crate::console::{ConsoleError, ConsoleSocket};
use crate::detect::{detect, from_image, DetectError, ImageModule};
use crate::engine::{EngineError, WasmEngine};
use crate::grants::{apply_read_only, GrantError, Grants};
use crate::mount::{mount_rootfs, unmount_all, unmount_top, MountError, RootfsMount};
use crate::resolve::View;
use crate::spec::{self, SpecError};
use crate::zygote::{CreateRequest, Zygote, ZygoteError};

use super::prepare::{prepare, Preparer};
use crate::ErrorKind;

/// Why [`create`] or [`super::exec`] failed; the message is meant for the `ctr`/kubelet user.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The bundle's spec.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Mounting the rootfs.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Deciding between wasm and native.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// The engine refused the module (e.g. a missing `#func` export).
    #[error("{path}: {source}")]
    Module {
        /// The module's path inside the container.
        path: String,
        /// The engine's error.
        source: EngineError,
    },
    /// The module cache.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// Reading the module for the compiler.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Compiling the module.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// libcontainer's state root could not be created.
    #[error("state root {path}: {source}")]
    StateRoot {
        /// The state root.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Creating the container's process.
    #[error(transparent)]
    Zygote(#[from] ZygoteError),
    /// Setting up the process's terminal.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// A `wasmpod.io/` annotation.
    #[error(transparent)]
    Grant(#[from] GrantError),
}

impl CreateError {
    /// How the shim reports this failure: the spec, the program and the module are the
    /// tenant's (invalid argument); files, the cache and the compile process are the node's
    /// (internal); the zygote's failures keep the kind they crossed the process boundary with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Spec(SpecError::Invalid { .. } | SpecError::Bad(_)) => ErrorKind::InvalidArgument,
            Self::Spec(SpecError::Write { .. }) => ErrorKind::Internal,
            Self::Detect(_) | Self::Module { .. } | Self::Grant(_) => ErrorKind::InvalidArgument,
            Self::Source(SourceError::TooLarge { .. }) => ErrorKind::InvalidArgument,
            Self::Source(_) => ErrorKind::Internal,
            // Beyond the node's limits: the module asks too much, a retry will not help.
            Self::Compile(
                CompileError::Invalid { .. }
                | CompileError::Memory { .. }
                | CompileError::Timeout { .. },
            ) => ErrorKind::InvalidArgument,
            Self::Compile(_) | Self::Mount(_) | Self::Cache(_) | Self::StateRoot { .. } => {
                ErrorKind::Internal
            }
            Self::Zygote(e) => e.kind(),
            Self::Console(ConsoleError::Mismatch(_)) => ErrorKind::InvalidArgument,
            Self::Console(_) => ErrorKind::Internal,
        }
    }
}

/// What containerd's `Create` request says about a container.
pub struct CreateOptions<'a> {
    /// The container id.
    pub id: &'a str,
    /// containerd's bundle directory (config.json, rootfs/).
    pub bundle: &'a Path,
    /// libcontainer's state root.
    pub root: &'a Path,
    /// containerd's rootfs mounts, mounted on `<bundle>/rootfs` (none: the rootfs is ready).
    pub rootfs_mounts: &'a [RootfsMount],
    /// containerd's stdin FIFO, if any.
    pub stdin: Option<PathBuf>,
    /// containerd's stdout FIFO, if any.
    pub stdout: Option<PathBuf>,
    /// containerd's stderr FIFO, if any.
    pub stderr: Option<PathBuf>,
    /// Inherited by the container's init, which reports a memory-limit stop in it.
    pub oom_report: Option<BorrowedFd<'a>>,
    /// The wasm layer of the container's image, when it has one: it runs instead of `args[0]`.
    pub image_module: Option<&'a ImageModule>,
    /// containerd asks for a terminal (`ctr run -t`, CRI `tty: true`).
    pub terminal: bool,
}

/// A created container (or exec process), waiting for `Start`.
#[derive(Debug)]
pub struct Created {
    /// Its init process's pid (on the host).
    pub pid: i32,
    /// Whether it runs a wasm guest.
    pub wasm: bool,
    /// Why wasm or native was chosen.
    pub reason: String,
    /// Where the rootfs is (mounted by us when containerd passed mounts).
    pub rootfs: PathBuf,
    /// The master of the process's terminal, when it has one.
    pub console: Option<OwnedFd>,
    /// `sha256:<hex>` of the wasm module (its cache key), none for a native process.
    pub module_digest: Option<String>,
}

/// Creates container `opts.id`: mounts its rootfs, reads its spec, detects what it runs,
/// prepares a wasm module (compiled once per node and cached), and has a zygote worker create
/// its init, which waits for [`super::start`]. A failure removes everything it made.
pub fn create<E: WasmEngine>(
    zygote: &Zygote,
    preparer: &Preparer<E>,
    opts: &CreateOptions,
) -> Result<Created, CreateError> {
    let spec = spec::load(opts.bundle)?;
    let rootfs = spec::mount_target(&spec, opts.bundle, !opts.rootfs_mounts.is_empty())?;
    mount_rootfs(opts.rootfs_mounts, &rootfs)?;
    let result = create_on_rootfs(zygote, preparer, opts, &spec, &rootfs);
    // libcontainer found a container of this id: its state is someone else's, leave it be.
    let exists = matches!(&result, Err(e) if e.kind() == ErrorKind::AlreadyExists);
    if result.is_err() {
        if !exists {
            if let Err(e) = super::delete(opts.root, opts.id) {
                tracing::warn!(id = opts.id, error = %e, "cleanup after failed create");
            }
        }
        // Only our own mounts when the container exists: its rootfs may be under them.
        let unmounted = match (opts.rootfs_mounts.len(), exists) {
            (0, _) => Ok(()),
            (ours, true) => unmount_top(&rootfs, ours),
            (_, false) => unmount_all(&rootfs),
        };
        if let Err(e) = unmounted {
            tracing::warn!(id = opts.id, error = %e, "unmounting rootfs after failed create");
        }
    }
    result
}

fn create_on_rootfs<E: WasmEngine>(
    zygote: &Zygote,
    preparer: &Preparer<E>,
    opts: &CreateOptions,
    spec: &oci_spec::runtime::Spec,
    rootfs: &Path,
) -> Result<Created, CreateError> {
    let terminal = crate::console::terminal_of(spec.process().as_ref(), opts.terminal)?;
    // Every container of the pod gets the pod's annotations: a malformed one fails them all.
    let grants = Grants::from_spec(spec)?;
    let console_socket = terminal.then(ConsoleSocket::bind).transpose()?;
    let detect_span =
        tracing::info_span!(target: crate::TRACE_TARGET, "detect", id = opts.id).entered();
    let decision = match opts.image_module {
        Some(module) => from_image(spec, module)?,
        None => detect(spec, &View::of_spec(spec, rootfs))?,
    };
    tracing::info!(id = opts.id, reason = %decision.reason, "workload decision");
    drop(detect_span);
    let wasm = matches!(decision.workload, crate::detect::Workload::Wasm { .. });
    let mut spec = spec.clone();
    if wasm {
        grants.check_engine(E::NAME, E::SOCKETS, E::OUTBOUND_HTTP)?;
        if let Some(preopens) = &grants.preopens {
            apply_read_only(&mut spec, rootfs, preopens)?;
        }
        if !grants.is_default() {
            tracing::info!(id = opts.id, grants = ?grants, "guest capabilities narrowed by annotations");
        }
    }
    let spec = &spec;
    let prepared = prepare(preparer, opts.id, decision.workload)?;

    std::fs::create_dir_all(opts.root).map_err(|source| CreateError::StateRoot {
        path: opts.root.to_path_buf(),
        source,
    })?;
    let bundle = spec::write_effective(spec, opts.bundle, &opts.bundle.join("wasmpod"))?;
    let request = CreateRequest {
        id: opts.id.to_string(),
        bundle,
        root: opts.root.to_path_buf(),
        stdin: opts.stdin.clone(),
        stdout: opts.stdout.clone(),
        stderr: opts.stderr.clone(),
        systemd_cgroup: uses_systemd_cgroups(spec),
        workload: prepared.workload.clone(),
        exec_process: None,
        console_socket: console_socket.as_ref().map(|s| s.path().to_path_buf()),
    };
    let zygote_span =
        tracing::info_span!(target: crate::TRACE_TARGET, "zygote_create", id = opts.id).entered();
    let spawned = prepared.finish(zygote.create(&request, opts.oom_report))?;
    drop(zygote_span);
    // On an error the caller deletes the container, its init included.
    let console = console_socket.map(ConsoleSocket::receive).transpose()?;
    log_zygote_module(opts.id, prepared.wasm, spawned.module_reused);
    Ok(Created {
        pid: spawned.pid,
        wasm: prepared.wasm,
        reason: decision.reason,
        rootfs: rootfs.to_path_buf(),
        console,
        module_digest: prepared.module_digest(),
    })
}

/// Whether the zygote found the module already loaded (`zygote=reused`) or loaded it for this
/// container (`zygote=loaded`); either way the container's process inherits it.
pub(super) fn log_zygote_module(id: &str, wasm: bool, reused: bool) {
    if wasm {
        let zygote = if reused { "reused" } else { "loaded" };
        tracing::info!(id, zygote, "module ready before the container process");
    }
}

/// systemd's `slice:prefix:name` cgroupsPath form, on a host that runs systemd.
pub(super) fn uses_systemd_cgroups(spec: &oci_spec::runtime::Spec) -> bool {
    let systemd_form = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .and_then(|p| p.to_str())
        .is_some_and(|p| !p.starts_with('/') && p.split(':').count() == 3);
    systemd_form && Path::new("/run/systemd/system").exists()
}
