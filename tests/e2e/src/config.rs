//! The configuration file of the private containerd.

use std::path::Path;

/// Socket file names inside the base directory.
pub const GRPC_SOCKET: &str = "containerd.sock";
pub const TTRPC_SOCKET: &str = "containerd.sock.ttrpc";

/// `config.toml` (version 2) for a containerd whose every path lives under `base`.
///
/// All configuration is generated here, so later needs (e.g. enabling CRI) change one place.
pub fn containerd_config(base: &Path) -> String {
    let path = |name: &str| quote(&base.join(name));
    format!(
        r#"version = 2
root = {root}
state = {state}
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = {grpc}

[ttrpc]
  address = {ttrpc}

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}
"#,
        root = path("root"),
        state = path("state"),
        grpc = path(GRPC_SOCKET),
        ttrpc = path(TTRPC_SOCKET),
        opt = path("opt"),
    )
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
        assert!(text.contains(r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#));
    }
}
