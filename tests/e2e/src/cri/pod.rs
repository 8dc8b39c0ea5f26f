//! Pod and container configurations as kubelet sends them, and a pod handle that stops and
//! removes its sandbox when dropped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use k8s_cri::v1::*;

use super::client::{image_spec, CriClient};

/// The cgroup parent of pod `uid`, as kubelet's cgroupfs driver names it.
pub fn cgroup_parent(uid: &str) -> String {
    format!("/kubepods/pod{uid}")
}

/// A pod's sandbox configuration: its own network namespace (on the CNI bridge), pid namespace
/// per container, logs under `log_dir`, cgroups under [`cgroup_parent`].
pub fn pod_config(name: &str, uid: &str, log_dir: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.to_string(),
            namespace: "wasmpod-e2e".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: log_dir.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(uid),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Kubernetes' defaults (`shareProcessNamespace: false`): network and IPC of the pod, a pid
/// namespace per container. kubelet sends them for the sandbox and for every container.
fn namespace_options() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A container `name` running `image` with `command` (entrypoint override; empty keeps the
/// image's); its log goes to `<pod log dir>/<name>.log`.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(image_spec(image)),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: log_name(name),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(namespace_options()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `shareProcessNamespace: true`: kubelet asks for the pod's PID namespace for the sandbox and
/// for each container. Apply it to the sandbox's configuration and to every container's.
pub fn share_process_namespace(options: &mut Option<NamespaceOption>) {
    options.get_or_insert_with(namespace_options).pid = NamespaceMode::Pod as i32;
}

/// [`share_process_namespace`] for a container's configuration.
pub fn in_pod_pid_namespace(mut config: ContainerConfig) -> ContainerConfig {
    let linux = config.linux.get_or_insert_with(Default::default);
    let context = linux.security_context.get_or_insert_with(Default::default);
    share_process_namespace(&mut context.namespace_options);
    config
}

/// [`share_process_namespace`] for a sandbox's configuration.
pub fn sandbox_in_pod_pid_namespace(config: &mut PodSandboxConfig) {
    let linux = config.linux.get_or_insert_with(Default::default);
    let context = linux.security_context.get_or_insert_with(Default::default);
    share_process_namespace(&mut context.namespace_options);
}

/// `config` with host directory `host` mounted at `at` (a hostPath or emptyDir volume, as
/// kubelet passes it).
pub fn with_mount(
    mut config: ContainerConfig,
    host: &Path,
    at: &str,
    readonly: bool,
) -> ContainerConfig {
    config.mounts.push(Mount {
        container_path: at.to_string(),
        host_path: host.to_string_lossy().into_owned(),
        readonly,
        ..Default::default()
    });
    config
}

/// The log file of container `name` relative to the pod's log directory.
pub fn log_name(name: &str) -> String {
    format!("{name}.log")
}

/// Sets the container's memory limit (and, as kubelet does, CPU shares).
pub fn with_memory_limit(mut config: ContainerConfig, bytes: i64) -> ContainerConfig {
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: bytes,
        cpu_shares: 2,
        ..Default::default()
    });
    config
}

/// Adds an environment variable.
pub fn with_env(mut config: ContainerConfig, key: &str, value: &str) -> ContainerConfig {
    config.envs.push(KeyValue {
        key: key.to_string(),
        value: value.to_string(),
    });
    config
}

/// Adds a container annotation (CRI passes `wasmpod.io/*` ones to the shim, see
/// [`crate::config::containerd_config`]).
pub fn with_annotation(mut config: ContainerConfig, key: &str, value: &str) -> ContainerConfig {
    config
        .annotations
        .insert(key.to_string(), value.to_string());
    config
}

/// Adds a pod annotation: for [`Pod::run_with`] (every container of the pod gets it).
pub fn annotate_pod(config: &mut PodSandboxConfig, key: &str, value: &str) {
    config
        .annotations
        .insert(key.to_string(), value.to_string());
}

/// A running pod. Dropping it stops and removes the sandbox (best effort), as kubelet's
/// garbage collection would.
pub struct Pod<'a> {
    cri: &'a CriClient,
    pub id: String,
    pub uid: String,
    pub config: PodSandboxConfig,
    pub log_dir: PathBuf,
    removed: bool,
}

impl<'a> Pod<'a> {
    /// RunPodSandbox `name` with `handler`; logs go to a new directory under `logs_root`.
    pub fn run(cri: &'a CriClient, name: &str, handler: &str, logs_root: &Path) -> Result<Self> {
        Self::run_with(cri, name, handler, logs_root, |_| {})
    }

    /// [`Pod::run`] with the sandbox's configuration changed by `edit` first (e.g.
    /// [`share_process_namespace`]).
    pub fn run_with(
        cri: &'a CriClient,
        name: &str,
        handler: &str,
        logs_root: &Path,
        edit: impl FnOnce(&mut PodSandboxConfig),
    ) -> Result<Self> {
        let uid = unique_uid(name);
        let log_dir = logs_root.join(&uid);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let mut config = pod_config(name, &uid, &log_dir);
        edit(&mut config);
        let id = cri.run_pod(&config, handler)?;
        Ok(Pod {
            cri,
            id,
            uid,
            config,
            log_dir,
            removed: false,
        })
    }

    /// A handle on an existing pod (e.g. after a containerd restart, with a new client).
    pub fn adopt(cri: &'a CriClient, id: &str, uid: &str, logs_root: &Path) -> Self {
        let log_dir = logs_root.join(uid);
        Pod {
            cri,
            id: id.to_string(),
            uid: uid.to_string(),
            config: pod_config(&pod_name(uid), uid, &log_dir),
            log_dir,
            removed: false,
        }
    }

    /// CreateContainer + StartContainer; returns the container id.
    pub fn start(&self, config: &ContainerConfig) -> Result<String> {
        let id = self.cri.create_container(&self.id, config, &self.config)?;
        self.cri.start_container(&id)?;
        Ok(id)
    }

    /// The pod's IP on the CNI bridge.
    pub fn ip(&self) -> Result<String> {
        let status = self.cri.pod_status(&self.id)?;
        status
            .network
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
            .with_context(|| format!("pod {} has no IP", self.id))
    }

    /// The host path of container `name`'s log.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir.join(log_name(name))
    }

    /// The pod's cgroup directory in the v1 hierarchy `hierarchy` (e.g. `memory`).
    pub fn cgroup_dir(&self, hierarchy: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(cgroup_parent(&self.uid).trim_start_matches('/'))
    }

    /// Leaves the pod running when the handle is dropped (see [`Pod::adopt`]).
    pub fn keep(mut self) {
        self.removed = true;
    }

    /// StopPodSandbox + RemovePodSandbox, then removes the pod cgroups (kubelet's job).
    pub fn remove(&mut self) -> Result<()> {
        self.removed = true;
        self.cri.stop_pod(&self.id)?;
        self.cri.remove_pod(&self.id)?;
        self.remove_pod_cgroups();
        Ok(())
    }

    fn remove_pod_cgroups(&self) {
        for hierarchy in cgroup_hierarchies() {
            let _ = std::fs::remove_dir(self.cgroup_dir(&hierarchy));
        }
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.cri.stop_pod(&self.id);
            let _ = self.cri.remove_pod(&self.id);
            self.remove_pod_cgroups();
        }
    }
}

/// The v1 hierarchies mounted under `/sys/fs/cgroup` (this host is cgroup v1 hybrid; the v2
/// `unified` mount has no controllers). A pod's containers get a directory in each.
pub fn cgroup_hierarchies() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "unified")
        .collect();
    names.sort();
    names
}

/// The pod name a [`unique_uid`] was made from.
fn pod_name(uid: &str) -> String {
    uid.rsplitn(3, '-').last().unwrap_or(uid).to_string()
}

fn unique_uid(name: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{name}-{}-{n}", std::process::id())
}
