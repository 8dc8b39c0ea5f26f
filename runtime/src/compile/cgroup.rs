//! The node's compile cgroup: wasmpod's own, beside the pods' (never a pod's: a pod's memory
//! limit must not decide whether its module can be prepared on one node and not on another).
//! One memory limit for every compile of the node, and a CPU weight below the pods'.
//!
//! cgroup v2 (`/sys/fs/cgroup/<name>`: `memory.max`, `cpu.weight`) or v1, hybrid included
//! (`/sys/fs/cgroup/memory/<name>`: `memory.limit_in_bytes`; `/sys/fs/cgroup/cpu/<name>`:
//! `cpu.shares`). The compile process moves itself in before it reads a byte of the module.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
/// v2 `cpu.weight` (default 100) and v1 `cpu.shares` (default 1024): a tenth of a default
/// group, far below a node's pods.
const CPU_WEIGHT: u64 = 10;
const CPU_SHARES: u64 = 102;

#[derive(Debug, thiserror::Error)]
#[error("compile cgroup {path}: {source}")]
pub struct CgroupError {
    path: PathBuf,
    source: std::io::Error,
}

#[derive(Debug, Clone)]
pub struct CompileCgroup {
    /// The `cgroup.procs` files the compile process writes its pid to.
    pub procs: Vec<PathBuf>,
    /// Where the kernel counts OOM kills in this cgroup.
    oom_events: PathBuf,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError {
        path: path.to_path_buf(),
        source,
    })
}

fn create(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

impl CompileCgroup {
    /// Creates (or reuses) the cgroup `name` and sets its limits.
    pub fn prepare(name: &str, memory: u64) -> Result<Self, CgroupError> {
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").exists() {
            let dir = root.join(name);
            create(&dir)?;
            write(&dir.join("memory.max"), &memory.to_string())?;
            // Best effort: the cpu controller may not be enabled for the root's children.
            let _ = write(&dir.join("cpu.weight"), &CPU_WEIGHT.to_string());
            return Ok(Self {
                procs: vec![dir.join("cgroup.procs")],
                oom_events: dir.join("memory.events"),
            });
        }
        let memory_dir = root.join("memory").join(name);
        create(&memory_dir)?;
        write(
            &memory_dir.join("memory.limit_in_bytes"),
            &memory.to_string(),
        )?;
        let mut procs = vec![memory_dir.join("cgroup.procs")];
        let cpu_dir = root.join("cpu").join(name);
        if root.join("cpu").is_dir() && create(&cpu_dir).is_ok() {
            let _ = write(&cpu_dir.join("cpu.shares"), &CPU_SHARES.to_string());
            procs.push(cpu_dir.join("cgroup.procs"));
        }
        Ok(Self {
            procs,
            oom_events: memory_dir.join("memory.oom_control"),
        })
    }

    /// OOM kills in the cgroup so far (`oom_kill` of v2 `memory.events` or v1
    /// `memory.oom_control`); 0 when the kernel does not say.
    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(&self.oom_events)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

/// Called in the compile process, first: moves it into the cgroup.
pub fn join(procs: &[PathBuf]) -> Result<(), CgroupError> {
    for path in procs {
        write(path, "0")?;
    }
    Ok(())
}
