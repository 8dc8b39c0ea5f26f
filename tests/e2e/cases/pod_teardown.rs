//! What a pod leaves on the host, observed while it runs and checked gone after
//! RemovePodSandbox: processes, mounts, cgroups, its network namespace, shim sockets in every
//! namespace the suite uses, and state directories. Each kind is first confirmed present, so a
//! check that looks in the wrong place fails instead of passing on nothing. A plain module,
//! not a case module: it has no `cases()`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_e2e::containerd::NAMESPACES;
use wasmpod_e2e::cri::pod::cgroup_hierarchies;
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::leaks::{self, wait_until};
use wasmpod_e2e::{mounts, Env};

use crate::support::Proc;

/// How long a removed pod's processes, mounts and files may take to go.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);
/// containerd's bundles of CRI tasks, below its state directory.
const BUNDLES: &str = "io.containerd.runtime.v2.task/k8s.io";
/// CRI's network namespace files, below containerd's state directory.
const NETNS_DIR: &str = "io.containerd.grpc.v1.cri/netns";
/// libcontainer's state of the shim's containers in CRI's namespace.
const WASMPOD_STATE: &str = "/run/wasmpod/k8s.io";

/// What pod `pod` and its containers held on the host while they ran.
#[derive(Debug)]
pub(crate) struct PodTrace {
    pod: String,
    /// The pod's id and its containers' ids.
    ids: Vec<String>,
    /// The pause process, the pod's shim, and each container's init that was running.
    processes: Vec<Proc>,
    /// The pod's cgroup in every hierarchy, and those of its running containers.
    cgroups: Vec<PathBuf>,
    /// The pod's cgroup directories, which must end up with no child.
    pod_cgroups: Vec<PathBuf>,
    /// CRI's bind mount of the pod's network namespace.
    netns: PathBuf,
    /// Mount points whose line names the pod or one of its containers (rootfs mounts).
    mounts: Vec<PathBuf>,
    /// The pod shim's socket (CRI groups a pod's containers under the sandbox id).
    sockets: Vec<PathBuf>,
    /// containerd's bundle and the shim's state directory of the pod and running containers.
    state_dirs: Vec<PathBuf>,
    /// containerd's state directory.
    state_root: PathBuf,
}

impl PodTrace {
    /// Records what the running pod holds; fails when something every running pod has (its
    /// pause process and shim, cgroups, network namespace, rootfs mount, shim socket, state
    /// directories) cannot be seen. `ids` are the pod's containers, running or not.
    pub(crate) fn observe(env: &Env, pod: &Pod<'_>, ids: &[&str]) -> Result<Self> {
        let state_root = env.containerd().base().join("state");
        let running = running_tasks(env)?;
        let pause_pid = *running
            .get(&pod.id)
            .with_context(|| format!("the pod's sandbox task {} is not running", pod.id))?;
        let pause = Proc::of(pause_pid).with_context(|| format!("no pause process {pause_pid}"))?;
        let shim_pid = crate::cri_support::ppid(pause_pid)?;
        let shim_exe = leaks::exe_name(shim_pid).unwrap_or_default();
        ensure!(
            shim_exe == env.shim_binary(),
            "the pause process's parent {shim_pid} is {shim_exe:?}, not the pod's shim"
        );
        let shim = Proc::of(shim_pid).with_context(|| format!("no shim process {shim_pid}"))?;
        let mut trace = PodTrace {
            pod: pod.id.clone(),
            ids: ids
                .iter()
                .map(|s| s.to_string())
                .chain([pod.id.clone()])
                .collect(),
            processes: vec![pause, shim],
            cgroups: Vec::new(),
            pod_cgroups: Vec::new(),
            netns: netns_of(&state_root, pause_pid)?,
            mounts: Vec::new(),
            sockets: vec![leaks::shim_socket_for(
                env.containerd().address(),
                "k8s.io",
                &pod.id,
            )],
            state_dirs: Vec::new(),
            state_root,
        };
        // Not every hierarchy gets one (e.g. `systemd`, where no controller is asked for), but
        // the memory controller always does.
        trace.pod_cgroups = cgroup_hierarchies()
            .iter()
            .map(|h| pod.cgroup_dir(h))
            .filter(|dir| dir.is_dir())
            .collect();
        let memory = pod.cgroup_dir("memory");
        ensure!(
            trace.pod_cgroups.contains(&memory),
            "the pod's cgroup {} is missing",
            memory.display()
        );
        trace.cgroups = trace.pod_cgroups.clone();
        trace.cgroups.extend(cgroup_dirs_of(pause_pid));
        for id in ids {
            let Some(&pid) = running.get(*id) else {
                continue;
            };
            if let Some(init) = Proc::of(pid) {
                trace.processes.push(init);
                trace.cgroups.extend(cgroup_dirs_of(pid));
            }
            trace.state_dirs.extend(
                state_dirs(&trace.state_root, id)
                    .into_iter()
                    .filter(|d| d.is_dir()),
            );
        }
        for dir in state_dirs(&trace.state_root, &pod.id) {
            ensure!(dir.is_dir(), "the pod's state {} is missing", dir.display());
            trace.state_dirs.push(dir);
        }
        for socket in &trace.sockets {
            ensure!(
                socket.exists(),
                "the pod's shim socket {} is missing",
                socket.display()
            );
        }
        let all = mounts::mounts()?;
        trace.mounts = all
            .iter()
            .filter(|m| trace.ids.iter().any(|id| m.line.contains(id.as_str())))
            .map(|m| m.mount_point.clone())
            .collect();
        ensure!(
            trace
                .mounts
                .iter()
                .any(|m| m.to_string_lossy().contains(&pod.id)),
            "no mount of the pod's sandbox {} (its rootfs)",
            pod.id
        );
        Ok(trace)
    }

    /// After RemovePodSandbox: waits until nothing recorded, and nothing naming the pod or its
    /// containers, remains; fails listing what does.
    pub(crate) fn assert_gone(&self, env: &Env) -> Result<()> {
        let mut left = Vec::new();
        let gone = wait_until(GONE_TIMEOUT, || {
            left = self.leftovers(env);
            left.is_empty()
        });
        ensure!(
            gone,
            "pod {} left behind:\n  {}",
            self.pod,
            left.join("\n  ")
        );
        Ok(())
    }

    fn leftovers(&self, env: &Env) -> Vec<String> {
        let mut left = Vec::new();
        for p in self.processes.iter().filter(|p| p.alive()) {
            left.push(format!("process {}", p.describe()));
        }
        for id in &self.ids {
            for pid in leaks::processes_matching(id) {
                let cmd = leaks::cmdline(pid).unwrap_or_default();
                left.push(format!("process {pid}: {cmd}"));
            }
            left.extend(
                leaks::mounts_containing(id)
                    .into_iter()
                    .map(|m| format!("mount {m}")),
            );
            for namespace in NAMESPACES {
                let socket = leaks::shim_socket_for(env.containerd().address(), namespace, id);
                if socket.exists() {
                    left.push(format!("shim socket {} ({namespace})", socket.display()));
                }
            }
            for dir in state_dirs(&self.state_root, id) {
                if dir.exists() {
                    left.push(format!("state {}", dir.display()));
                }
            }
        }
        let mounted: Vec<PathBuf> = mounts::mounts()
            .map(|all| all.into_iter().map(|m| m.mount_point).collect())
            .unwrap_or_default();
        for point in self.mounts.iter().chain([&self.netns]) {
            if mounted.contains(point) {
                left.push(format!("mount {}", point.display()));
            }
        }
        if self.netns.exists() {
            left.push(format!("netns {}", self.netns.display()));
        }
        for path in self
            .cgroups
            .iter()
            .chain(&self.sockets)
            .chain(&self.state_dirs)
        {
            if path.exists() {
                left.push(format!("{}", path.display()));
            }
        }
        for dir in &self.pod_cgroups {
            if let Ok(entries) = std::fs::read_dir(dir) {
                left.extend(
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| format!("cgroup {}", e.path().display())),
                );
            }
        }
        left.sort();
        left.dedup();
        left
    }
}

/// Pids of the RUNNING tasks of CRI's namespace, by task id.
fn running_tasks(env: &Env) -> Result<BTreeMap<String, u32>> {
    Ok(env
        .cri_ctr()
        .task_rows()?
        .into_iter()
        .filter(|row| row.status == "RUNNING")
        .filter_map(|row| Some((row.id, row.pid?)))
        .collect())
}

/// containerd's bundle and the shim's state directory of task `id`.
fn state_dirs(state_root: &Path, id: &str) -> [PathBuf; 2] {
    [
        state_root.join(BUNDLES).join(id),
        Path::new(WASMPOD_STATE).join(id),
    ]
}

/// The file CRI bind-mounted the network namespace of `pid` on: the one in CRI's netns
/// directory with the namespace's inode.
fn netns_of(state_root: &Path, pid: u32) -> Result<PathBuf> {
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("reading /proc/{pid}/ns/net"))?
        .ino();
    let dir = state_root.join(NETNS_DIR);
    let found = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == ns));
    let path = found.with_context(|| {
        format!(
            "no file in {} is the network namespace of the pod (inode {ns})",
            dir.display()
        )
    })?;
    let mounted = mounts::mounts()?.iter().any(|m| m.mount_point == path);
    ensure!(mounted, "{} is not a mount point", path.display());
    Ok(path)
}

/// The cgroup directories of `pid` in the v1 hierarchies, from `/proc/PID/cgroup`.
fn cgroup_dirs_of(pid: u32) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Vec::new();
    };
    let hierarchies = cgroup_hierarchies();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let hierarchy = hierarchies
                .iter()
                .find(|h| h.split(',').eq(controllers.split(',')))?;
            let dir = Path::new("/sys/fs/cgroup")
                .join(hierarchy)
                .join(path.trim_start_matches('/'));
            dir.is_dir().then_some(dir)
        })
        .collect()
}

/// Observes the running pod, removes it (StopPodSandbox, RemovePodSandbox) and checks that
/// nothing of it remains.
pub(crate) fn remove_and_assert_gone(env: &Env, pod: &mut Pod<'_>, ids: &[&str]) -> Result<()> {
    let trace = PodTrace::observe(env, pod, ids)?;
    pod.remove()?;
    trace.assert_gone(env)
}
