//! What a test case gets: the private containerd, `ctr`, images and paths.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::containerd::Containerd;
use crate::cri::CriClient;
use crate::ctr::Ctr;
use crate::engine::Engine;
use crate::{images, leaks, paths};

/// How long [`Env::assert_no_leaks`] waits for the leftovers of a container to go away.
pub const LEAK_TIMEOUT: Duration = Duration::from_secs(10);

type Lazy = OnceLock<Result<String, String>>;

/// Shared by all cases of a run. Images are built and imported on first use, once per run.
#[derive(Debug)]
pub struct Env {
    containerd: Containerd,
    shim_dir: PathBuf,
    fixtures: PathBuf,
    busybox: Lazy,
    wasm: Lazy,
    cri: OnceLock<Result<CriClient, String>>,
    next_id: AtomicUsize,
    engine: Engine,
}

/// The containerd namespace of the CRI plugin.
pub const CRI_NAMESPACE: &str = "k8s.io";

impl Env {
    /// Starts containerd with the shim directory of [`paths::shim_dir`] first on its PATH.
    pub fn start() -> Result<Self> {
        Self::with_shim_dir(&paths::shim_dir())
    }

    /// Starts containerd with `shim_dir` first on its PATH.
    pub fn with_shim_dir(shim_dir: &Path) -> Result<Self> {
        Self::with_shim_env(shim_dir, &[])
    }

    /// An environment whose containerd passes `shim_env` on to its shims.
    pub fn with_shim_env(shim_dir: &Path, shim_env: &[(&str, &str)]) -> Result<Self> {
        let engine = Engine::from_env()?;
        Ok(Env {
            containerd: Containerd::start_with_env(shim_dir, shim_env)?,
            shim_dir: shim_dir.to_path_buf(),
            fixtures: paths::fixtures_dir(),
            busybox: OnceLock::new(),
            wasm: OnceLock::new(),
            cri: OnceLock::new(),
            engine,
            next_id: AtomicUsize::new(0),
        })
    }

    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// For cases that restart their own containerd (never the shared one: other cases use it).
    pub fn containerd_mut(&mut self) -> &mut Containerd {
        &mut self.containerd
    }

    /// `ctr` for namespace `default` of the private containerd.
    pub fn ctr(&self) -> &Ctr {
        self.containerd.ctr()
    }

    /// The directory containerd searches first for shim binaries.
    pub fn shim_dir(&self) -> &Path {
        &self.shim_dir
    }

    /// The path of the engine's shim binary; fails saying how to build it when missing.
    /// Call it first in every case that uses wasmpod's runtime.
    pub fn require_shim(&self) -> Result<PathBuf> {
        paths::require_shim_in(&self.shim_dir, &self.engine.shim_binary())
    }

    /// The engine this run targets (`E2E_ENGINE`).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// wasmpod's runtime name for this run's engine (`io.containerd.<engine>.v1`).
    pub fn runtime(&self) -> String {
        self.engine.runtime()
    }

    /// The CRI handler of wasmpod for this run's engine.
    pub fn cri_handler(&self) -> &str {
        self.engine.cri_handler()
    }

    /// The file name of wasmpod's shim binary for this run's engine.
    pub fn shim_binary(&self) -> String {
        self.engine.shim_binary()
    }

    /// `<workspace>/tests/fixtures`.
    pub fn fixtures_dir(&self) -> &Path {
        &self.fixtures
    }

    /// The imported [`images::BUSYBOX_IMAGE`] (built on first call).
    pub fn busybox_image(&self) -> Result<&str> {
        self.lazy_image(&self.busybox, |dir| {
            images::import_busybox(self.ctr(), dir, &self.fixtures)
        })
    }

    /// The imported [`images::WASM_IMAGE`] (built on first call; needs the fixtures).
    pub fn wasm_image(&self) -> Result<&str> {
        self.lazy_image(&self.wasm, |dir| {
            images::import_wasm(self.ctr(), dir, &self.fixtures)
        })
    }

    /// A CRI client of the private containerd, with the pause, busybox and wasm images
    /// imported into namespace [`CRI_NAMESPACE`] (done on first call).
    pub fn cri(&self) -> Result<&CriClient> {
        let result = self
            .cri
            .get_or_init(|| self.connect_cri().map_err(|e| format!("{e:#}")));
        match result {
            Ok(client) => Ok(client),
            Err(e) => Err(anyhow!("{e}")),
        }
    }

    fn connect_cri(&self) -> Result<CriClient> {
        let ctr = self.ctr().clone().with_namespace(CRI_NAMESPACE);
        let dir = self.containerd.base().join("cri-images");
        std::fs::create_dir_all(&dir)?;
        images::import_pause(&ctr, &dir)?;
        images::import_busybox(&ctr, &dir, &self.fixtures)?;
        images::import_wasm(&ctr, &dir, &self.fixtures)?;
        let client = CriClient::connect(self.containerd.address())?;
        // The CRI plugin learns of imported images from events: wait until it knows them.
        for image in [
            crate::config::PAUSE_IMAGE,
            images::BUSYBOX_IMAGE,
            images::WASM_IMAGE,
        ] {
            let known = leaks::wait_until(Duration::from_secs(10), || {
                client.has_image(image).unwrap_or(false)
            });
            if !known {
                anyhow::bail!("the CRI plugin does not list {image} after import");
            }
        }
        Ok(client)
    }

    /// `ctr` for the CRI plugin's namespace.
    pub fn cri_ctr(&self) -> Ctr {
        self.ctr().clone().with_namespace(CRI_NAMESPACE)
    }

    /// Where pods of this run keep their container logs (one directory per pod).
    pub fn pod_logs_root(&self) -> PathBuf {
        self.containerd.base().join("pod-logs")
    }

    fn lazy_image<'a>(
        &self,
        cell: &'a Lazy,
        build: impl FnOnce(&Path) -> Result<String>,
    ) -> Result<&'a str> {
        let result = cell.get_or_init(|| {
            let dir = self.containerd.base().join("images");
            std::fs::create_dir_all(&dir)
                .map_err(anyhow::Error::from)
                .and_then(|()| build(&dir))
                .map_err(|e| format!("{e:#}"))
        });
        match result {
            Ok(name) => Ok(name),
            Err(e) => Err(anyhow!("{e}")),
        }
    }

    /// A container id unique to this run and process: `NAME-PID-N` (other characters
    /// than ASCII letters, digits, `.`, `_`, `-` become `-`).
    pub fn unique_id(&self, name: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let clean: String = name
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
                _ => '-',
            })
            .collect();
        format!("{clean}-{}-{n}", std::process::id())
    }

    /// Waits up to [`LEAK_TIMEOUT`] until container `id` left nothing behind (processes,
    /// cgroups, mounts, its shim socket); fails listing what remains.
    pub fn assert_no_leaks(&self, id: &str) -> Result<()> {
        leaks::assert_no_leaks(self.containerd.address(), id, LEAK_TIMEOUT)
    }

    /// Stops containerd and removes its base directory (also done on drop).
    pub fn stop(&mut self) -> Result<()> {
        self.containerd.stop()
    }

    /// Waits for idle shims of this containerd to exit on their own (they linger briefly after
    /// their last container, see `shim/src/lifetime.rs`), then stops containerd.
    /// Shims still running after that wait are a finding, reported after the stop.
    pub fn stop_gracefully(&mut self) -> Result<()> {
        let address = self.containerd.address().display().to_string();
        let mut left = Vec::new();
        let idle = leaks::wait_until(LEAK_TIMEOUT, || {
            left = leaks::processes_matching(&address);
            left.is_empty()
        });
        self.stop()?;
        if !idle {
            let described: Vec<String> = left
                .iter()
                .map(|&pid| format!("{pid}: {}", leaks::cmdline(pid).unwrap_or_default()))
                .collect();
            anyhow::bail!(
                "processes of this containerd still ran {LEAK_TIMEOUT:?} after its last container: {}",
                described.join("; ")
            );
        }
        Ok(())
    }
}
