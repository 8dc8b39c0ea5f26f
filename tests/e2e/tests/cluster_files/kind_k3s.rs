//! The kind and k3s scripts, Dockerfile and Makefile targets: pinned, consistent, runnable.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use anyhow::{Context, Result};
use serde_yaml::Value as Yaml;

use crate::support::*;

#[test]
fn kind_files_build_a_pinned_node_with_the_shim() -> Result<()> {
    let bins = shim_bins()?;
    let mut problems = Problems::default();
    let docker = read(DOCKERFILE)?;
    let instructions = dockerfile_instructions(&docker);
    let from: Vec<&String> = instructions
        .iter()
        .filter(|i| i.to_ascii_uppercase().starts_with("FROM "))
        .collect();
    problems.check(from.len() == 1, DOCKERFILE, "needs exactly one FROM");
    for f in &from {
        let image = f.split_whitespace().nth(1).unwrap_or_default();
        problems.check(
            pinned_kind_node(image),
            DOCKERFILE,
            format_args!("FROM {image:?} is not kindest/node:v1.29.<patch>@sha256:<digest>"),
        );
    }
    let copies: Vec<Vec<&str>> = instructions
        .iter()
        .filter(|i| i.to_ascii_uppercase().starts_with("COPY "))
        .map(|i| {
            i.split_whitespace()
                .skip(1)
                .filter(|w| !w.starts_with("--"))
                .collect()
        })
        .collect();
    let copies_shim = copies.iter().any(|c| {
        c.len() == 2
            && bins.contains(c[0])
            && (c[1] == "/usr/local/bin/" || c[1] == format!("/usr/local/bin/{}", c[0]))
    });
    problems.check(
        copies_shim,
        DOCKERFILE,
        format_args!("no COPY of a shim binary ({bins:?} in {SHIM_CARGO}) into /usr/local/bin/"),
    );
    let fragment_name = FRAGMENT.rsplit('/').next().unwrap_or(FRAGMENT);
    problems.check(
        copies.iter().any(|c| c.first() == Some(&fragment_name)),
        DOCKERFILE,
        format_args!("does not COPY {fragment_name}"),
    );
    problems.check(
        instructions.iter().any(|i| {
            i.starts_with("RUN ")
                && i.contains(fragment_name)
                && i.contains(">> /etc/containerd/config.toml")
        }),
        DOCKERFILE,
        format_args!("no RUN that appends {fragment_name} to /etc/containerd/config.toml"),
    );

    // run.sh builds the context the Dockerfile copies from.
    let run = read(RUN_SH)?;
    let common = read(COMMON_SH)?;
    let shim_name = shell_var(&shell_vars(&common), "WASMPOD_SHIM_NAME")?;
    problems.check(
        bins.contains(&shim_name),
        COMMON_SH,
        format_args!("WASMPOD_SHIM_NAME={shim_name:?} is not a [[bin]] of {SHIM_CARGO} ({bins:?})"),
    );
    problems.check(
        copies
            .iter()
            .any(|c| c.first() == Some(&shim_name.as_str())),
        DOCKERFILE,
        format_args!("copies no {shim_name} (WASMPOD_SHIM_NAME in {COMMON_SH})"),
    );
    for needle in [
        "$WASMPOD_SHIM_NAME",
        fragment_name,
        "kind-config.yaml",
        "Dockerfile",
        "kind load image-archive",
        "wasmpod_deploy_and_check",
        "KEEP_CLUSTER",
    ] {
        problems.check(
            run.contains(needle),
            RUN_SH,
            format_args!("never uses {needle}"),
        );
    }
    for needle in [
        "\"$CARGO\" build --release",
        "wasmpod-shim",
        "wasmpod-oci-image",
        "release/wasmpod-image",
        "runtimeclass.yaml",
        "deployment.yaml",
        "wait --for=condition=Available",
        " logs ",
    ] {
        problems.check(
            common.contains(needle),
            COMMON_SH,
            format_args!("never uses {needle}"),
        );
    }

    // kind-config.yaml: one node, with the image run.sh builds; run.sh reads both values with
    // awk (the first `name:` and `image:` lines), so they must be what the YAML says.
    let kind = yaml(KIND_CONFIG)?;
    problems.check(
        str_at(&kind, &["kind"]) == Some("Cluster")
            && str_at(&kind, &["apiVersion"]) == Some("kind.x-k8s.io/v1alpha4"),
        KIND_CONFIG,
        "must be a kind.x-k8s.io/v1alpha4 Cluster",
    );
    let nodes = kind.get("nodes").and_then(Yaml::as_sequence);
    problems.check(
        nodes.map(Vec::len) == Some(1),
        KIND_CONFIG,
        "needs exactly one node",
    );
    let image = nodes
        .and_then(|n| n.first())
        .and_then(|n| str_at(n, &["image"]));
    let name = str_at(&kind, &["name"]);
    let text = read(KIND_CONFIG)?;
    let first_value = |key: &str| {
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(key)).then(|| words.next().unwrap_or_default().to_string())
        })
    };
    problems.check(
        name.is_some() && first_value("name:").as_deref() == name,
        KIND_CONFIG,
        format_args!("the first `name:` line must be the cluster name {name:?} (run.sh reads it)"),
    );
    problems.check(
        image.is_some() && first_value("image:").as_deref() == image,
        KIND_CONFIG,
        format_args!("the first `image:` line must be the node image {image:?} (run.sh reads it)"),
    );
    problems.check(
        image.is_some_and(|i| !i.starts_with("kindest/")),
        KIND_CONFIG,
        format_args!("node image {image:?} must be the one built from {DOCKERFILE}, not a stock kindest/node"),
    );
    problems.finish()
}

#[test]
fn k3s_bootstrap_uses_the_k8s_manifests_and_a_pinned_k3s() -> Result<()> {
    let mut problems = Problems::default();
    let boot = read(BOOTSTRAP_SH)?;
    for file in files_in(K3S)? {
        problems.check(
            !(file.ends_with(".yaml") || file.ends_with(".yml")),
            &file,
            format_args!("manifests belong in {K8S} (bootstrap.sh applies those), not copies here"),
        );
    }
    problems.check(
        boot.contains("source \"$HERE/../k8s/common.sh\""),
        BOOTSTRAP_SH,
        "must source test/k8s/common.sh (which applies test/k8s/runtimeclass.yaml and deployment.yaml)",
    );
    let version = shell_vars(&boot)
        .get("K3S_VERSION")
        .cloned()
        .unwrap_or_default();
    problems.check(
        pinned_k3s(&version),
        BOOTSTRAP_SH,
        format_args!("K3S_VERSION={version:?} is not a pinned v1.29.<patch>+k3s<n> (containerd 1.7, config version 2)"),
    );
    for needle in [
        "https://get.k3s.io",
        "INSTALL_K3S_VERSION=$K3S_VERSION",
        "/var/lib/rancher/k3s/agent/etc/containerd",
        "config.toml.tmpl",
        "/usr/local/bin/$WASMPOD_SHIM_NAME",
        "systemctl restart k3s",
        "k3s ctr -n k8s.io images import",
        "wasmpod_deploy_and_check",
        "UNINSTALL",
        "k3s-uninstall.sh",
    ] {
        problems.check(
            boot.contains(needle),
            BOOTSTRAP_SH,
            format_args!("never uses {needle}"),
        );
    }
    problems.finish()
}

#[test]
fn cluster_files_name_only_real_shims() -> Result<()> {
    let bins = shim_bins()?;
    let types = runtime_types()?;
    let mut problems = Problems::default();
    let mut files = files_in(K8S)?;
    files.extend(files_in(K3S)?);
    files.push("Makefile".to_string());
    files.push("README.md".to_string());
    for file in files {
        let text = read(&file)?;
        for bin in tokens(&text, "containerd-shim-", "-v1") {
            problems.check(
                bins.contains(&bin),
                &file,
                format_args!("names shim binary {bin:?}, but {SHIM_CARGO} build {bins:?}"),
            );
        }
        for runtime in tokens(&text, "io.containerd.", ".v1") {
            problems.check(
                types.contains(&runtime),
                &file,
                format_args!("names runtime {runtime:?}, but {SHIM_CARGO} provide {types:?}"),
            );
        }
    }
    problems.finish()
}

#[test]
fn scripts_pass_bash_n() -> Result<()> {
    let mut problems = Problems::default();
    for file in [RUN_SH, BOOTSTRAP_SH, COMMON_SH] {
        let text = read(file)?;
        let path = root().join(file);
        let status = Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .with_context(|| format!("running bash -n {file}"))?;
        problems.check(
            status.status.success(),
            file,
            format_args!(
                "bash -n failed: {}",
                String::from_utf8_lossy(&status.stderr).trim()
            ),
        );
        if file == COMMON_SH {
            // Sourced, not run.
            continue;
        }
        problems.check(
            text.starts_with("#!/usr/bin/env bash\n"),
            file,
            "must start with #!/usr/bin/env bash",
        );
        problems.check(
            text.lines().any(|l| l.trim() == "set -euo pipefail"),
            file,
            "must `set -euo pipefail`",
        );
        let mode = std::fs::metadata(&path)?.permissions().mode();
        problems.check(
            mode & 0o111 == 0o111,
            file,
            format_args!("must be executable (mode {mode:o}): the Makefile runs it directly"),
        );
    }
    problems.finish()
}

#[test]
fn make_targets_run_the_scripts() -> Result<()> {
    let mut problems = Problems::default();
    let makefile = read("Makefile")?;
    let lines: Vec<&str> = makefile.lines().collect();
    for (target, script) in [("test/k8s", RUN_SH), ("test/k3s", BOOTSTRAP_SH)] {
        let phony = lines.iter().any(|l| {
            l.strip_prefix(".PHONY:")
                .is_some_and(|names| names.split_whitespace().any(|n| n == target))
        });
        // Without .PHONY, make would consider the folder of the same name up to date.
        problems.check(
            phony,
            "Makefile",
            format_args!("{target} must be .PHONY (a folder has its name)"),
        );
        let recipe: Vec<&str> = lines
            .iter()
            .skip_while(|l| !l.starts_with(&format!("{target}:")))
            .skip(1)
            .take_while(|l| l.starts_with('\t'))
            .copied()
            .collect();
        problems.check(
            recipe.iter().any(|l| l.contains(script)),
            "Makefile",
            format_args!("target {target} does not run {script} (recipe: {recipe:?})"),
        );
        // And make agrees: `make -n` prints the recipe without running it.
        let out = Command::new("make")
            .args(["-s", "-n", "-C"])
            .arg(root())
            .arg(target)
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .output();
        match out {
            Ok(out) => {
                let stdout = String::from_utf8_lossy(&out.stdout);
                problems.check(
                    out.status.success() && stdout.contains(script),
                    "Makefile",
                    format_args!(
                        "`make -n {target}` does not run {script}: {} {}",
                        stdout.trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.add("Makefile", format_args!("running make -n {target}: {e}")),
        }
    }
    let readme = read("README.md")?;
    for needle in ["make test/k8s", "make test/k3s", "RuntimeClass"] {
        problems.check(
            readme.contains(needle),
            "README.md",
            format_args!("does not mention {needle}"),
        );
    }
    problems.finish()
}
