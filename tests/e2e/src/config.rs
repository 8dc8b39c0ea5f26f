//! The configuration files of the private containerd: `config.toml` with the CRI plugin and
//! the CNI network its pods get.

use std::path::Path;

/// Socket file names inside the base directory.
pub const GRPC_SOCKET: &str = "containerd.sock";
pub const TTRPC_SOCKET: &str = "containerd.sock.ttrpc";
/// The CRI runtime handlers: name → runtime type.
pub const CRI_HANDLERS: &[(&str, &str)] = &[
    ("wasmtime", "io.containerd.wasmtime.v1"),
    ("wasmer", "io.containerd.wasmer.v1"),
    ("wasmedge", "io.containerd.wasmedge.v1"),
    ("runc", "io.containerd.runc.v2"),
];
/// The sandbox (pause) image CRI starts every pod with; built and imported by the harness.
pub const PAUSE_IMAGE: &str = "docker.io/wasmpod/pause:latest";
/// Directories below the base directory.
pub const CNI_CONF_DIR: &str = "cni/net.d";
pub const CNI_DATA_DIR: &str = "cni/ipam";
/// CNI plugins as Debian's containernetworking-plugins installs them.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The pod network of one private containerd: its own bridge and /24, so two daemons (or two
/// test runs) never share addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    pub bridge: String,
    /// The third octet of `10.213.N.0/24`.
    pub subnet_octet: u8,
}

impl PodNetwork {
    /// A network derived from `seed` (e.g. a pid and a counter).
    pub fn from_seed(seed: u32) -> Self {
        PodNetwork {
            bridge: format!("wpod{}", seed % 100_000),
            subnet_octet: (seed % 250) as u8 + 1,
        }
    }

    pub fn subnet(&self) -> String {
        format!("10.213.{}.0/24", self.subnet_octet)
    }

    pub fn gateway(&self) -> String {
        format!("10.213.{}.1", self.subnet_octet)
    }
}

/// `config.toml` (version 2) for a containerd whose every path lives under `base`, with the CRI
/// plugin serving [`CRI_HANDLERS`] and pods on the CNI network in `base/`[`CNI_CONF_DIR`].
pub fn containerd_config(base: &Path) -> String {
    let path = |name: &str| quote(&base.join(name));
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    let mut runtimes = String::new();
    for (handler, runtime_type) in CRI_HANDLERS {
        runtimes.push_str(&format!(
            "\n[{cri}.containerd.runtimes.{handler}]\n  runtime_type = \"{runtime_type}\"\n  \
             pod_annotations = [\"wasmpod.io/*\"]\n  container_annotations = [\"wasmpod.io/*\"]\n"
        ));
    }
    format!(
        r#"version = 2
root = {root}
state = {state}

[grpc]
  address = {grpc}

[ttrpc]
  address = {ttrpc}

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE here: lowering oom_score_adj would fail.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = {conf_dir}
  max_conf_num = 1

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
{runtimes}"#,
        root = path("root"),
        state = path("state"),
        grpc = path(GRPC_SOCKET),
        ttrpc = path(TTRPC_SOCKET),
        opt = path("opt"),
        conf_dir = path(CNI_CONF_DIR),
    )
}

/// The CNI conflist: a bridge with host-local addresses and no masquerading (no iptables
/// needed); the host reaches pods through the bridge's gateway address.
pub fn cni_conflist(base: &Path, net: &PodNetwork) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": net.bridge,
        "plugins": [{
            "type": "bridge",
            "bridge": net.bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "dataDir": base.join(CNI_DATA_DIR),
                "ranges": [[{ "subnet": net.subnet(), "gateway": net.gateway() }]],
                "routes": [{ "dst": "0.0.0.0/0" }]
            }
        }]
    })
    .to_string()
}

/// A TOML basic string; JSON string escapes are valid TOML escapes.
fn quote(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).expect("a string always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_live_under_base() {
        let text = containerd_config(Path::new("/tmp/base"));
        assert!(text.contains(r#"root = "/tmp/base/root""#));
        assert!(text.contains(r#"address = "/tmp/base/containerd.sock""#));
        assert!(text.contains(r#"address = "/tmp/base/containerd.sock.ttrpc""#));
        assert!(text.contains(r#"path = "/tmp/base/opt""#));
        assert!(text.contains(r#"conf_dir = "/tmp/base/cni/net.d""#));
    }

    #[test]
    fn every_handler_has_a_runtime_table() {
        let text = containerd_config(Path::new("/tmp/base"));
        for (handler, runtime_type) in CRI_HANDLERS {
            let table =
                format!(".containerd.runtimes.{handler}]\n  runtime_type = \"{runtime_type}\"");
            assert!(text.contains(&table), "{table} missing in:\n{text}");
        }
    }

    #[test]
    fn networks_from_different_seeds_differ() {
        let a = PodNetwork::from_seed(1001);
        let b = PodNetwork::from_seed(1002);
        assert_ne!(a.bridge, b.bridge);
        assert_ne!(a.subnet(), b.subnet());
        let list = cni_conflist(Path::new("/tmp/base"), &a);
        assert!(list.contains("\"ipMasq\":false"), "{list}");
        assert!(list.contains("/tmp/base/cni/ipam"), "{list}");
    }
}
