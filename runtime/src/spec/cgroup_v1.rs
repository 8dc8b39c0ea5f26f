//! The `cgroup` mount of a container that joins another's PID namespace (a pod with
//! `shareProcessNamespace: true`), on a cgroup v1 host.
//!
//! libcontainer 0.7 builds a v1 `cgroup` mount from the cgroups of the process its init takes
//! for its parent, found by a pid that is only right when the init is pid 1 of a new PID
//! namespace: in a joined one it reads some other host process (or none) and the rootfs cannot
//! be prepared. Such a container gets the same file system spelled out instead: a tmpfs with
//! each controller's hierarchy bind-mounted from the container's own cgroup, as libcontainer
//! and runc give a container without a cgroup namespace.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, MountBuilder, Spec};

const HOST_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Replaces `spec`'s `cgroup` mounts when the container joins an existing PID namespace on a
/// host with cgroup v1 controllers; any other spec is left alone.
pub(super) fn spell_out_for_joined_pid_namespace(spec: &mut Spec) {
    let joins_pid_namespace = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|namespaces| {
            namespaces
                .iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Pid && ns.path().is_some())
        });
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .filter(|p| p.is_absolute());
    let (true, Some(cgroups_path)) = (joins_pid_namespace, cgroups_path) else {
        return;
    };
    let hierarchies = controller_hierarchies(Path::new(HOST_CGROUP_ROOT));
    if hierarchies.is_empty() {
        return; // cgroup v2 only: libcontainer mounts cgroup2 without looking at a parent.
    }
    let Some(mounts) = spec.mounts().clone() else {
        return;
    };
    let mut out = Vec::with_capacity(mounts.len() + hierarchies.len() + 1);
    for mount in mounts {
        if mount.typ().as_deref() == Some("cgroup") {
            tracing::debug!(destination = %mount.destination().display(), "cgroup v1 mount spelled out (joined PID namespace)");
            out.extend(spelled_out(&mount, &hierarchies, &cgroups_path));
        } else {
            out.push(mount);
        }
    }
    spec.set_mounts(Some(out));
}

/// A controller hierarchy of the host: its directory name under /sys/fs/cgroup (`memory`,
/// `cpu,cpuacct`) and the names of symlinks that alias it (`cpu`, `cpuacct`).
#[derive(Debug, PartialEq)]
struct Hierarchy {
    name: String,
    aliases: Vec<String>,
}

/// The v1 controller hierarchies mounted under `root` (named ones such as `name=systemd`
/// and the cgroup2 mount are not the container's: libcontainer does not place it there).
fn controller_hierarchies(root: &Path) -> Vec<Hierarchy> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut hierarchies: Vec<Hierarchy> = mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mount_point = Path::new(pre.split(' ').nth(4)?);
            let mut post = post.split(' ');
            let (fstype, options) = (post.next()?, post.nth(1)?);
            let is_controller = fstype == "cgroup" && !options.contains("name=");
            let name = mount_point.strip_prefix(root).ok()?.to_str()?;
            (is_controller && !name.is_empty() && !name.contains('/')).then(|| Hierarchy {
                name: name.to_string(),
                aliases: Vec::new(),
            })
        })
        .collect();
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let alias = entry.file_name().to_string_lossy().into_owned();
        if let Some(h) = hierarchies
            .iter_mut()
            .find(|h| target.as_os_str() == h.name.as_str())
        {
            h.aliases.push(alias);
        }
    }
    hierarchies
}

/// A tmpfs at the cgroup mount's destination, and each hierarchy (and its aliases) bound
/// from the container's cgroup in it, read-only when the cgroup mount was.
fn spelled_out(mount: &Mount, hierarchies: &[Hierarchy], cgroups_path: &Path) -> Vec<Mount> {
    let read_only = mount
        .options()
        .as_ref()
        .is_some_and(|o| o.iter().any(|o| o == "ro"));
    let strings = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut out = Vec::new();
    if let Ok(tmpfs) = MountBuilder::default()
        .destination(mount.destination().clone())
        .typ("tmpfs")
        .source("tmpfs")
        .options(strings(&["nosuid", "noexec", "nodev", "mode=755"]))
        .build()
    {
        out.push(tmpfs);
    }
    let relative = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    let mut options = strings(&["rbind", "nosuid", "noexec", "nodev"]);
    if read_only {
        options.push("ro".to_string());
    }
    for h in hierarchies {
        let source: PathBuf = Path::new(HOST_CGROUP_ROOT).join(&h.name).join(relative);
        for name in std::iter::once(&h.name).chain(&h.aliases) {
            if let Ok(bind) = MountBuilder::default()
                .destination(mount.destination().join(name))
                .typ("bind")
                .source(source.clone())
                .options(options.clone())
                .build()
            {
                out.push(bind);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder};

    fn spec(pid_path: Option<&str>) -> Spec {
        let mut pid = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Pid);
        if let Some(p) = pid_path {
            pid = pid.path(p);
        }
        let linux = LinuxBuilder::default()
            .namespaces(vec![pid.build().unwrap()])
            .cgroups_path("/kubepods/pod1/c1")
            .build()
            .unwrap();
        let cgroup = MountBuilder::default()
            .destination("/sys/fs/cgroup")
            .typ("cgroup")
            .source("cgroup")
            .options(vec!["nosuid".to_string(), "ro".to_string()])
            .build()
            .unwrap();
        let mut spec = Spec::default();
        spec.set_linux(Some(linux));
        spec.set_mounts(Some(vec![cgroup]));
        spec
    }

    #[test]
    fn only_a_joined_pid_namespace_changes_the_mounts() {
        let mut own = spec(None);
        spell_out_for_joined_pid_namespace(&mut own);
        assert_eq!(own.mounts(), spec(None).mounts());
    }

    #[test]
    fn the_cgroup_mount_becomes_a_tmpfs_and_read_only_binds() {
        let hierarchies = vec![Hierarchy {
            name: "cpu,cpuacct".to_string(),
            aliases: vec!["cpu".to_string()],
        }];
        let spec = spec(Some("/proc/7/ns/pid"));
        let mounts = spelled_out(
            &spec.mounts().as_ref().unwrap()[0],
            &hierarchies,
            Path::new("/kubepods/pod1/c1"),
        );
        let dest: Vec<_> = mounts.iter().map(|m| m.destination().clone()).collect();
        assert_eq!(
            dest,
            [
                "/sys/fs/cgroup",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/cpu"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(mounts[0].typ().as_deref(), Some("tmpfs"));
        assert_eq!(
            mounts[2].source().as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/c1"))
        );
        assert!(mounts[1]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string()));
    }
}
