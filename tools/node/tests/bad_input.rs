//! Bad input: a clear error, and not one byte of the node changed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{fixture, read, Node};
use wasmpod_node::{install, uninstall, Error};

/// Installs into `rel` holding `text`, expects an error whose text contains `expected`, and
/// checks that no file changed (config, bin and state directories).
fn refused(rel: &str, text: &str, expected: &str) -> Error {
    let node = Node::new();
    let config = node.write(rel, text);
    let before = node.files();
    let err = install(&node.install_options(&config)).expect_err("install should fail");
    assert!(
        err.to_string().contains(expected),
        "`{expected}` not in: {err}"
    );
    assert_eq!(node.files(), before, "a failed install changed files");
    err
}

#[test]
fn an_unparsable_config() {
    let err = refused(
        "etc/containerd/config.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"\nsandbox_image = 1\n",
        "not valid TOML",
    );
    assert!(matches!(err, Error::Parse { .. }));
}

#[test]
fn an_unknown_config_version() {
    let err = refused(
        "etc/containerd/config.toml",
        "version = 7\n",
        "config version 7",
    );
    assert!(matches!(err, Error::UnsupportedVersion { .. }));
    refused(
        "etc/containerd/config.toml",
        "root = \"/var/lib/containerd\"\n",
        "no `version` key",
    );
}

#[test]
fn a_handler_name_used_by_another_runtime() {
    let text = fixture("v2-commented.toml").replace("runtimes.runc", "runtimes.wasmtime");
    let err = refused("etc/containerd/config.toml", &text, "io.containerd.runc.v2");
    assert!(matches!(err, Error::HandlerTaken { .. }));
    let template = fixture("k3s-config.toml.tmpl").replace("runtimes.crun", "runtimes.wasmer");
    refused("k3s/config.toml.tmpl", &template, "already registered");
}

#[test]
fn a_config_containerd_cannot_read_is_rolled_back() {
    // Valid TOML that containerd refuses (`oom_score` is a number): the check after the
    // write fails, and the write is undone.
    let node = Node::new();
    let text = fixture("v2-commented.toml").replacen(
        "version = 2\n",
        "version = 2\noom_score = \"high\"\n",
        1,
    );
    let config = node.write("etc/containerd/config.toml", &text);
    let before = node.files();
    let mut options = node.install_options(&config);
    options.check = true;
    let err = install(&options).expect_err("containerd rejects oom_score = \"high\"");
    assert!(matches!(err, Error::Rejected(_)), "{err}");
    assert!(
        err.to_string().contains("oom_score") || err.to_string().contains("high"),
        "{err}"
    );
    assert_eq!(node.files(), before);
}

#[test]
fn a_missing_shim_binary() {
    let node = Node::new();
    std::fs::remove_file(node.shim_dir().join("containerd-shim-wasmer-v1")).unwrap();
    let config = node.write("etc/containerd/config.toml", "version = 2\n");
    let before = node.files();
    let err = install(&node.install_options(&config)).unwrap_err();
    assert!(matches!(err, Error::MissingBinary { .. }), "{err}");
    assert_eq!(node.files(), before);
}

#[test]
fn a_config_edited_after_install_is_not_overwritten() {
    let node = Node::new();
    let text = fixture("v2-commented.toml");
    let config = node.write("etc/containerd/config.toml", &text);
    install(&node.install_options(&config)).unwrap();
    let edited = format!("{}\n[debug]\n  level = \"debug\"\n", read(&config));
    std::fs::write(&config, &edited).unwrap();
    let err = uninstall(&node.uninstall_options()).unwrap_err();
    assert!(matches!(err, Error::ChangedSinceInstall { .. }), "{err}");
    assert_eq!(read(&config), edited);
    let mut force = node.uninstall_options();
    force.force = true;
    uninstall(&force).unwrap();
    assert_eq!(read(&config), text);
}

#[test]
fn uninstall_without_an_install() {
    let node = Node::new();
    let err = uninstall(&node.uninstall_options()).unwrap_err();
    assert!(matches!(err, Error::NotInstalled { .. }), "{err}");
}

/// Runs `wasmpod-node` with `args`, as root in a mount namespace of its own where `ro_dir` is
/// a read-only bind mount of itself.
fn run_with_read_only(ro_dir: &Path, args: &[&str]) -> std::process::Output {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_wasmpod-node"));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test needs root (it bind-mounts a directory read-only)"
    );
    let script =
        "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\" && shift && exec \"$@\"";
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(ro_dir)
        .arg(exe)
        .args(args)
        .output()
        .expect("unshare (util-linux) runs")
}

#[test]
fn a_read_only_config_directory() {
    let node = Node::new();
    let text = fixture("v2-commented.toml");
    let config = node.write("etc/containerd/config.toml", &text);
    let before = node.files();
    let state_dir = node.state_dir();
    let bin_dir = node.bin_dir();
    let shim_dir = node.shim_dir();
    let out = run_with_read_only(
        config.parent().unwrap(),
        &[
            "install",
            "--config",
            &config.to_string_lossy(),
            "--shim-dir",
            &shim_dir.to_string_lossy(),
            "--bin-dir",
            &bin_dir.to_string_lossy(),
            "--state-dir",
            &state_dir.to_string_lossy(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "install succeeded on a read-only directory"
    );
    assert!(stderr.contains("read-only"), "{stderr}");
    assert_eq!(node.files(), before, "{stderr}");
}

#[test]
fn a_read_only_bin_directory() {
    let node = Node::new();
    let config = node.write("etc/containerd/config.toml", "version = 2\n");
    std::fs::create_dir_all(node.bin_dir()).unwrap();
    let before = node.files();
    let out = run_with_read_only(
        &node.bin_dir(),
        &[
            "install",
            "--config",
            &config.to_string_lossy(),
            "--shim-dir",
            &node.shim_dir().to_string_lossy(),
            "--bin-dir",
            &node.bin_dir().to_string_lossy(),
            "--state-dir",
            &node.state_dir().to_string_lossy(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("read-only"), "{stderr}");
    assert_eq!(node.files(), before, "{stderr}");
}
