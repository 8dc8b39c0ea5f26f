//! `Create`: everything that can fail on bad input happens here, before a process exists, so
//! the error reaches the `ctr` user fast and nothing is left behind.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use crate::cache::{ModuleCache, Outcome};
use crate::detect::{detect, from_image, DetectError, ImageModule, WasmFormat, Workload};
use crate::engine::{EngineError, WasmEngine};
use crate::mount::{mount_rootfs, unmount_all, MountError, RootfsMount};
use crate::spec::{self, SpecError};
use crate::zygote::{CreateRequest, PreparedWorkload, Zygote, ZygoteError};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error("{path}: {source}")]
    Module { path: String, source: EngineError },
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error("state root {path}: {source}")]
    StateRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Zygote(#[from] ZygoteError),
}

pub struct CreateOptions<'a> {
    pub id: &'a str,
    /// containerd's bundle directory (config.json, rootfs/).
    pub bundle: &'a Path,
    /// libcontainer's state root.
    pub root: &'a Path,
    pub rootfs_mounts: &'a [RootfsMount],
    pub stdin: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    /// Inherited by the container's init, which reports a memory-limit stop in it.
    pub oom_report: Option<BorrowedFd<'a>>,
    /// The wasm layer of the container's image, when it has one: it runs instead of args[0].
    pub image_module: Option<&'a ImageModule>,
}

#[derive(Debug)]
pub struct Created {
    pub pid: i32,
    pub wasm: bool,
    /// Why wasm or native was chosen.
    pub reason: String,
    /// Where the rootfs is (mounted by us when containerd passed mounts).
    pub rootfs: PathBuf,
}

pub fn create<E: WasmEngine>(
    zygote: &Zygote,
    engine: &E,
    cache: &ModuleCache,
    opts: &CreateOptions,
) -> Result<Created, CreateError> {
    let spec = spec::load(opts.bundle)?;
    let rootfs = spec::mount_target(&spec, opts.bundle, !opts.rootfs_mounts.is_empty())?;
    mount_rootfs(opts.rootfs_mounts, &rootfs)?;
    let result = create_on_rootfs(zygote, engine, cache, opts, &spec, &rootfs);
    if result.is_err() {
        if let Err(e) = super::delete(opts.root, opts.id) {
            tracing::warn!(id = opts.id, error = %e, "cleanup after failed create");
        }
        if !opts.rootfs_mounts.is_empty() {
            if let Err(e) = unmount_all(&rootfs) {
                tracing::warn!(id = opts.id, error = %e, "unmounting rootfs after failed create");
            }
        }
    }
    result
}

fn create_on_rootfs<E: WasmEngine>(
    zygote: &Zygote,
    engine: &E,
    cache: &ModuleCache,
    opts: &CreateOptions,
    spec: &oci_spec::runtime::Spec,
    rootfs: &Path,
) -> Result<Created, CreateError> {
    let decision = match opts.image_module {
        Some(module) => from_image(spec, module)?,
        None => detect(spec, rootfs)?,
    };
    tracing::info!(id = opts.id, reason = %decision.reason, "workload decision");
    let (workload, wasm) = prepare(engine, cache, opts.id, decision.workload)?;

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
        workload,
        exec_process: None,
    };
    let spawned = zygote.create(&request, opts.oom_report)?;
    log_zygote_module(opts.id, wasm, spawned.module_reused);
    Ok(Created {
        pid: spawned.pid,
        wasm,
        reason: decision.reason,
        rootfs: rootfs.to_path_buf(),
    })
}

/// Turns a detected workload into what the zygote worker needs: for wasm, the module compiled
/// (or found in the cache) and its entrypoint checked. Returns the workload and whether it is wasm.
pub(super) fn prepare<E: WasmEngine>(
    engine: &E,
    cache: &ModuleCache,
    id: &str,
    workload: Workload,
) -> Result<(PreparedWorkload, bool), CreateError> {
    let Workload::Wasm {
        path,
        func,
        source,
        format,
    } = workload
    else {
        return Ok((PreparedWorkload::Native, false));
    };
    let module_err = |source| CreateError::Module {
        path: path.clone(),
        source,
    };
    if format == WasmFormat::Component && !E::SUPPORTS_COMPONENTS {
        return Err(module_err(EngineError::ComponentUnsupported {
            engine: E::NAME,
        }));
    }
    let (module, artifact, outcome) =
        cache.get_or_compile(engine, &source).map_err(|e| match e {
            crate::cache::CacheError::Engine(source) => module_err(source),
            other => CreateError::Cache(other),
        })?;
    let verdict = match outcome {
        Outcome::Hit => "hit",
        Outcome::Miss => "miss, compiled",
        Outcome::Replaced => "unloadable entry, recompiled",
    };
    tracing::info!(id, module = %path, cache = verdict, "module prepared");
    engine
        .check_entry(&module, func.as_deref())
        .map_err(module_err)?;
    let prepared = PreparedWorkload::Wasm {
        artifact,
        module_path: path,
        func,
    };
    Ok((prepared, true))
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
