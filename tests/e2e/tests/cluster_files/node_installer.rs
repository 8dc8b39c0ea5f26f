//! wasmpod-node's DaemonSet and the script writing its image.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_yaml::Value as Yaml;

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// wasmpod-node's DaemonSet and the script writing its image

pub const NODE_INSTALLER: &str = "test/k8s/node-installer.yaml";
pub const NODE_IMAGE_SH: &str = "test/k8s/node-installer-image.sh";
pub const NODE_CLI: &str = "tools/node/src/cli.rs";
/// Where the image keeps what the DaemonSet copies to the node.
pub const PAYLOAD_IN_IMAGE: &str = "/opt/wasmpod/";
/// The node directory the DaemonSet mounts (and wasmpod-node's default state directory).
pub const NODE_STATE_DIR: &str = "/var/lib/wasmpod-node";
/// nsenter's options, not wasmpod-node's.
pub const NSENTER_OPTIONS: &[&str] = &["--target", "--mount", "--uts", "--ipc", "--net", "--pid"];

/// The words following each `flag ` in `text`.
pub fn values_after(text: &str, flag: &str) -> BTreeSet<String> {
    text.split(&format!("{flag} "))
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|w| w.trim_matches('"').to_string())
        .collect()
}

#[test]
pub fn node_installer_daemonset_runtime_classes_and_image_agree() -> Result<()> {
    let mut problems = Problems::default();
    let bins = shim_bins()?;
    let list = yaml(NODE_INSTALLER)?;
    problems.check(
        str_at(&list, &["apiVersion"]) == Some("v1") && str_at(&list, &["kind"]) == Some("List"),
        NODE_INSTALLER,
        "must be one v1 List (one YAML document holding the RuntimeClasses and the DaemonSet)",
    );
    let items = list
        .get("items")
        .and_then(Yaml::as_sequence)
        .with_context(|| format!("{NODE_INSTALLER}: no items"))?;
    let kind_of = |item: &Yaml| str_at(item, &["kind"]).unwrap_or_default().to_string();

    // The RuntimeClasses: one per handler, each handler a shim engine.
    let mut classes = BTreeMap::new();
    for class in items.iter().filter(|i| kind_of(i) == "RuntimeClass") {
        problems.check(
            str_at(class, &["apiVersion"]) == Some("node.k8s.io/v1"),
            NODE_INSTALLER,
            "RuntimeClass apiVersion must be node.k8s.io/v1",
        );
        let name = str_at(class, &["metadata", "name"]).unwrap_or_default();
        let handler = str_at(class, &["handler"]).unwrap_or_default();
        let bin = format!("containerd-shim-{handler}-v1");
        problems.check(
            bins.contains(&bin),
            NODE_INSTALLER,
            format_args!(
                "RuntimeClass {name:?} has handler {handler:?}, but {SHIM_CARGO} builds no {bin}"
            ),
        );
        classes.insert(name.to_string(), handler.to_string());
    }
    let (class_name, class_handler) = runtime_class(&mut problems)?;
    problems.check(
        classes.get(&class_name) == Some(&class_handler),
        NODE_INSTALLER,
        format_args!(
            "lacks the RuntimeClass {class_name:?} (handler {class_handler:?}) of {RUNTIMECLASS}"
        ),
    );
    let handlers: BTreeSet<String> = classes.values().cloned().collect();

    // The DaemonSet.
    let daemonsets: Vec<&Yaml> = items.iter().filter(|i| kind_of(i) == "DaemonSet").collect();
    let [ds] = daemonsets[..] else {
        bail!(
            "{NODE_INSTALLER}: {} DaemonSets, expected one",
            daemonsets.len()
        );
    };
    problems.check(
        str_at(ds, &["apiVersion"]) == Some("apps/v1"),
        NODE_INSTALLER,
        "DaemonSet apiVersion must be apps/v1",
    );
    let template = at(ds, &["spec", "template"])
        .with_context(|| format!("{NODE_INSTALLER}: DaemonSet without spec.template"))?;
    let selector = at(ds, &["spec", "selector", "matchLabels"])
        .and_then(Yaml::as_mapping)
        .cloned()
        .unwrap_or_default();
    problems.check(
        !selector.is_empty(),
        NODE_INSTALLER,
        "no spec.selector.matchLabels",
    );
    for (key, value) in &selector {
        problems.check(
            at(template, &["metadata", "labels"]).and_then(|l| l.get(key)) == Some(value),
            NODE_INSTALLER,
            format_args!("selector label {key:?}={value:?} is not on the pod template"),
        );
    }
    let pod = template
        .get("spec")
        .with_context(|| format!("{NODE_INSTALLER}: no spec.template.spec"))?;
    problems.check(
        at(pod, &["hostPID"]).and_then(Yaml::as_bool) == Some(true),
        NODE_INSTALLER,
        "hostPID must be true: nsenter --target 1 enters the node's namespaces",
    );

    let image_script = read(NODE_IMAGE_SH)?;
    let image = shell_vars(&image_script)
        .get("IMAGE")
        .cloned()
        .with_context(|| format!("{NODE_IMAGE_SH}: no IMAGE=... assignment"))?;
    let containers = pod_containers(pod);
    for c in &containers {
        problems.check(
            c.image == image,
            NODE_INSTALLER,
            format_args!(
                "container {:?} runs {:?}, but {NODE_IMAGE_SH} writes {image:?}",
                c.name, c.image
            ),
        );
        problems.check(
            c.pull.as_deref() == Some("Never"),
            NODE_INSTALLER,
            format_args!("container {:?}: imagePullPolicy must be Never (the image is loaded from a tarball)", c.name),
        );
    }
    let Some(install) = containers.iter().find(|c| c.init) else {
        bail!("{NODE_INSTALLER}: no init container runs wasmpod-node");
    };
    problems.check(
        at(&install.spec, &["securityContext", "privileged"]).and_then(Yaml::as_bool) == Some(true),
        NODE_INSTALLER,
        "the init container must be privileged (nsenter into the node's init)",
    );
    let script = install.args.join("\n");
    problems.check(
        install.command.first().map(String::as_str) == Some("/bin/sh"),
        NODE_INSTALLER,
        "the init container's command must be /bin/sh -c (busybox in the image)",
    );
    problems.check(
        script.contains("nsenter --target 1") && script.contains("wasmpod-node"),
        NODE_INSTALLER,
        "the init container must run wasmpod-node through nsenter --target 1",
    );
    problems.check(
        script.contains(&format!("cp {PAYLOAD_IN_IMAGE}*")),
        NODE_INSTALLER,
        format_args!("the init container must copy {PAYLOAD_IN_IMAGE}* to the node"),
    );
    problems.check(
        script.contains(&format!("payload={NODE_STATE_DIR}/")),
        NODE_INSTALLER,
        format_args!("the payload must live under {NODE_STATE_DIR}, the mounted directory"),
    );
    let installed = values_after(&script, "--handler");
    problems.check(
        installed == handlers,
        NODE_INSTALLER,
        format_args!("wasmpod-node installs handlers {installed:?}, but the RuntimeClasses name {handlers:?}"),
    );
    let cli = read(NODE_CLI)?;
    for option in script.split_whitespace().filter(|w| w.starts_with("--")) {
        problems.check(
            NSENTER_OPTIONS.contains(&option) || cli.contains(&format!("\"{option}\"")),
            NODE_INSTALLER,
            format_args!("wasmpod-node has no option {option} ({NODE_CLI})"),
        );
    }
    let mounted = install
        .spec
        .get("volumeMounts")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|m| Some((str_at(m, &["name"])?, str_at(m, &["mountPath"])?)))
        .find(|(_, path)| *path == format!("/host{NODE_STATE_DIR}"));
    let volume = mounted.and_then(|(name, _)| {
        pod.get("volumes")?
            .as_sequence()?
            .iter()
            .find(|v| str_at(v, &["name"]) == Some(name))
    });
    problems.check(
        volume.and_then(|v| str_at(v, &["hostPath", "path"])) == Some(NODE_STATE_DIR),
        NODE_INSTALLER,
        format_args!(
            "the init container must mount the node's {NODE_STATE_DIR} at /host{NODE_STATE_DIR}"
        ),
    );

    // The image script puts wasmpod-node and the handlers' shims where the DaemonSet looks.
    let in_image = values_after(&image_script, "--file")
        .into_iter()
        .filter_map(|f| {
            f.strip_prefix(PAYLOAD_IN_IMAGE)
                .and_then(|rest| rest.split_once('='))
                .map(|(name, _)| name.to_string())
        })
        .collect::<BTreeSet<_>>();
    let mut wanted: BTreeSet<String> = handlers
        .iter()
        .map(|h| format!("containerd-shim-{h}-v1"))
        .collect();
    wanted.insert("wasmpod-node".into());
    problems.check(
        in_image == wanted,
        NODE_IMAGE_SH,
        format_args!("puts {in_image:?} into {PAYLOAD_IN_IMAGE}, the DaemonSet needs {wanted:?}"),
    );
    problems.check(
        image_script.contains("--busybox"),
        NODE_IMAGE_SH,
        "the image needs busybox (sh, cp, nsenter, sleep)",
    );
    problems.check(
        image_script.starts_with("#!/usr/bin/env bash\n")
            && image_script
                .lines()
                .any(|l| l.trim() == "set -euo pipefail"),
        NODE_IMAGE_SH,
        "must start with #!/usr/bin/env bash and `set -euo pipefail`",
    );
    let path = root().join(NODE_IMAGE_SH);
    let mode = std::fs::metadata(&path)?.permissions().mode();
    problems.check(mode & 0o111 == 0o111, NODE_IMAGE_SH, "must be executable");
    let syntax = Command::new("bash").arg("-n").arg(&path).output()?;
    problems.check(
        syntax.status.success(),
        NODE_IMAGE_SH,
        format_args!(
            "bash -n failed: {}",
            String::from_utf8_lossy(&syntax.stderr).trim()
        ),
    );
    problems.check(
        read("README.md")?.contains(NODE_INSTALLER),
        "README.md",
        format_args!("does not mention {NODE_INSTALLER}"),
    );
    problems.finish()
}
