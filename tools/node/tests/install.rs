//! Install, upgrade and uninstall on fake nodes: each config layout, idempotence, byte-exact
//! restores.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::{fixture, read, Node};
use wasmpod_node::plan::Layout;
use wasmpod_node::version::ConfigVersion;
use wasmpod_node::{install, status, uninstall};

/// Fails showing where `installed` stops repeating `original`.
fn assert_kept(original: &str, installed: &str) {
    if installed.starts_with(original) {
        return;
    }
    let at = original
        .bytes()
        .zip(installed.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(original.len().min(installed.len()));
    let from = at.saturating_sub(40);
    panic!(
        "the original is not kept at byte {at}:\n original: {:?}\ninstalled: {:?}",
        &original[from..(at + 40).min(original.len())],
        &installed[from..(at + 40).min(installed.len())]
    );
}

/// Installs into `rel` holding `text`, checks the handlers are there and a second install
/// changes nothing, uninstalls and checks every file of the node is as before.
fn round_trip(rel: &str, text: &str, version: ConfigVersion, layout: Layout) -> String {
    let node = Node::new();
    let config = node.write(rel, text);
    let before = node.files();

    let report = install(&node.install_options(&config)).unwrap();
    assert_eq!(report.version, version);
    assert_eq!(report.layout, layout);
    assert_eq!(report.changed, vec![report.file.clone()]);
    let installed = read(&report.file);
    let doc = wasmpod_node::template::parse(&installed, &report.file).unwrap();
    let handlers = wasmpod_node::runtimes::registered(&doc, version);
    assert_eq!(
        handlers["wasmtime"], "io.containerd.wasmtime.v1",
        "{installed}"
    );
    assert_eq!(handlers["wasmer"], "io.containerd.wasmer.v1", "{installed}");
    for engine in ["wasmtime", "wasmer"] {
        let binary = node.bin_dir().join(format!("containerd-shim-{engine}-v1"));
        let mode = std::fs::metadata(&binary).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{}", binary.display());
    }
    let after_first = node.files();

    let again = install(&node.install_options(&config)).unwrap();
    assert!(
        again.changed.is_empty(),
        "second install changed {:?}",
        again.changed
    );
    assert_eq!(
        node.files(),
        after_first,
        "a second install changes no file"
    );

    let status = status(Some(&config), &node.state_dir()).unwrap();
    assert_eq!(
        status.handlers.get("wasmtime").map(String::as_str),
        Some("io.containerd.wasmtime.v1")
    );
    assert!(status.binaries.iter().all(|(_, present)| *present));

    let removed = uninstall(&node.uninstall_options()).unwrap();
    assert_eq!(removed.removed.len(), 2);
    assert_eq!(
        node.files(),
        before,
        "uninstall leaves every file as it was"
    );
    assert!(!node.state_dir().exists());
    installed
}

#[test]
fn containerd_1_6_default_config() {
    let text = fixture("containerd-1.6-default.toml");
    let installed = round_trip(
        "etc/containerd/config.toml",
        &text,
        ConfigVersion::V2,
        Layout::Edit,
    );
    assert_kept(&text, &installed);
}

#[test]
fn v2_comments_and_formatting_are_kept() {
    let text = fixture("v2-commented.toml");
    let installed = round_trip(
        "etc/containerd/config.toml",
        &text,
        ConfigVersion::V2,
        Layout::Edit,
    );
    assert_kept(&text, &installed);
}

#[test]
fn containerd_2_default_config() {
    let text = fixture("containerd-2-default.toml");
    let installed = round_trip(
        "etc/containerd/config.toml",
        &text,
        ConfigVersion::V3,
        Layout::Edit,
    );
    assert_kept(&text, &installed);
    assert!(
        installed.contains("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasmtime]"),
        "{installed}"
    );
}

#[test]
fn containerd_2_minimal_config() {
    let text = fixture("v3-minimal.toml");
    round_trip(
        "etc/containerd/config.toml",
        &text,
        ConfigVersion::V3,
        Layout::Edit,
    );
}

#[test]
fn crlf_line_ends_are_kept() {
    let text = fixture("v2-commented.toml").replace('\n', "\r\n");
    let installed = round_trip(
        "etc/containerd/config.toml",
        &text,
        ConfigVersion::V2,
        Layout::Edit,
    );
    assert_kept(&text, &installed);
}

#[test]
fn imports_get_a_drop_in_and_the_main_config_is_untouched() {
    let node = Node::new();
    let main_text = "version = 2\nimports = [\"/PLACE/conf.d/*.toml\"]\n\n\
                     [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"main:1\"\n";
    let main_text = main_text.replace("/PLACE", &node.path("etc/containerd").to_string_lossy());
    let config = node.write("etc/containerd/config.toml", &main_text);
    node.write(
        "etc/containerd/conf.d/10-cri.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"dropin:2\"\n",
    );
    let before = node.files();
    let mut options = node.install_options(&config);
    options.check = true;
    let report = install(&options).unwrap();
    assert!(report.checked, "containerd config dump agrees");
    assert_eq!(report.layout, Layout::DropIn);
    assert_eq!(
        report.file,
        node.path("etc/containerd/conf.d/zz-wasmpod.toml")
    );
    assert_eq!(read(&config), main_text, "the main config is not edited");
    let drop_in = read(&report.file);
    assert!(
        drop_in.contains("sandbox_image = \"dropin:2\""),
        "{drop_in}"
    );
    assert!(drop_in.contains("runtimes.wasmtime]"), "{drop_in}");
    assert!(install(&node.install_options(&config))
        .unwrap()
        .changed
        .is_empty());
    uninstall(&node.uninstall_options()).unwrap();
    assert_eq!(node.files(), before);
}

#[test]
fn a_k3s_template_is_edited_and_restored() {
    let text = fixture("k3s-config.toml.tmpl");
    let installed = round_trip(
        "var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl",
        &text,
        ConfigVersion::V2,
        Layout::Template,
    );
    assert_kept(&text, &installed);
}

#[test]
fn a_k3s_node_without_a_template_gets_one_and_loses_it_again() {
    let node = Node::new();
    let dir = "var/lib/rancher/k3s/agent/etc/containerd";
    let rendered = node.write(
        &format!("{dir}/config.toml"),
        "version = 3\n# rendered by k3s\n",
    );
    let before = node.files();
    let report = install(&node.install_options(&rendered)).unwrap();
    assert_eq!(report.layout, Layout::Template);
    assert_eq!(
        report.file,
        node.path(&format!("{dir}/config-v3.toml.tmpl"))
    );
    let template = read(&report.file);
    assert!(
        template.starts_with("{{ template \"base\" . }}\n"),
        "{template}"
    );
    assert!(template.contains("\"io.containerd.cri.v1.runtime\".containerd.runtimes.wasmer]"));
    assert_eq!(read(&rendered), "version = 3\n# rendered by k3s\n");
    uninstall(&node.uninstall_options()).unwrap();
    assert_eq!(node.files(), before);
}

#[test]
fn an_empty_config_gets_the_version_of_the_installed_containerd() {
    let major = wasmpod_node::version::containerd_major(Path::new("containerd"))
        .expect("containerd --version (apt-get install containerd)");
    let expected = ConfigVersion::for_containerd_major(major).unwrap();
    let node = Node::new();
    let config = node.write("etc/containerd/config.toml", "# nothing yet\n");
    let report = install(&node.install_options(&config)).unwrap();
    assert_eq!(report.version, expected);
    assert!(read(&config).contains(&format!("version = {}", expected.number())));
    uninstall(&node.uninstall_options()).unwrap();
    assert_eq!(read(&config), "# nothing yet\n");
}

#[test]
fn a_missing_config_is_created_and_removed_again() {
    let node = Node::new();
    let config = node.path("etc/containerd/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    install(&node.install_options(&config)).unwrap();
    assert!(read(&config).contains("runtimes.wasmtime]"));
    uninstall(&node.uninstall_options()).unwrap();
    assert!(!config.exists());
}

#[test]
fn an_upgrade_replaces_the_shims_and_uninstall_still_restores_the_original() {
    let node = Node::new();
    let text = fixture("v2-commented.toml");
    let config = node.write("etc/containerd/config.toml", &text);
    install(&node.install_options(&config)).unwrap();
    node.put_shim("wasmtime", b"#!/bin/sh\n# wasmtime shim v2\n");
    let mut options = node.install_options(&config);
    options.handlers.push("fast=wasmtime".parse().unwrap());
    let report = install(&options).unwrap();
    assert_eq!(
        report.changed,
        vec![config.clone()],
        "the new handler is added"
    );
    let binary = node.bin_dir().join("containerd-shim-wasmtime-v1");
    assert_eq!(read(&binary), "#!/bin/sh\n# wasmtime shim v2\n");
    assert!(read(&config).contains("runtimes.fast]"));
    uninstall(&node.uninstall_options()).unwrap();
    assert_eq!(read(&config), text);
    assert!(!binary.exists());
}

#[test]
fn the_new_config_is_checked_with_containerd_config_dump() {
    let node = Node::new();
    let text = fixture("containerd-1.6-default.toml");
    let config = node.write("etc/containerd/config.toml", &text);
    let mut options = node.install_options(&config);
    options.check = true;
    let report = install(&options).unwrap();
    assert!(report.checked);
    uninstall(&node.uninstall_options()).unwrap();
    assert_eq!(read(&config), text);
}

#[test]
fn containerd_keeps_its_default_runtime() {
    // Naming one runtime makes containerd 1.6 forget its built-in runc: it is written out, and
    // the check proves the effective config lost nothing.
    let node = Node::new();
    let config = node.write("etc/containerd/config.toml", "version = 2\n");
    let mut options = node.install_options(&config);
    options.check = true;
    install(&options).unwrap();
    let text = read(&config);
    let doc = wasmpod_node::version::parse(&text, &config).unwrap();
    let handlers = wasmpod_node::runtimes::registered(&doc, ConfigVersion::V2);
    assert_eq!(handlers["runc"], "io.containerd.runc.v2", "{text}");
    uninstall(&node.uninstall_options()).unwrap();
    assert_eq!(read(&config), "version = 2\n");
}
