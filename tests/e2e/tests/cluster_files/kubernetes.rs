//! The RuntimeClass and the Deployment agree with containerd's handlers and the e2e images.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use serde_yaml::Value as Yaml;
use wasmpod_e2e::images::HELLO_TXT;
use wasmpod_e2e::WASM_IMAGE;

use crate::support::*;

#[test]
fn handlers_runtime_class_and_deployment_agree() -> Result<()> {
    let mut problems = Problems::default();
    let (class_name, class_handler) = runtime_class(&mut problems)?;
    for (file, config) in containerd_configs()? {
        let handlers: BTreeSet<String> = runtime_handlers(&file, &config)?.into_keys().collect();
        problems.check(
            handlers == BTreeSet::from([class_handler.clone()]),
            &file,
            format_args!(
                "containerd runtime handlers {handlers:?}, but {RUNTIMECLASS} has handler {class_handler:?}"
            ),
        );
    }

    let deploy = yaml(DEPLOYMENT)?;
    problems.check(
        str_at(&deploy, &["apiVersion"]) == Some("apps/v1"),
        DEPLOYMENT,
        "apiVersion must be apps/v1",
    );
    problems.check(
        str_at(&deploy, &["kind"]) == Some("Deployment"),
        DEPLOYMENT,
        "kind must be Deployment",
    );
    let template = at(&deploy, &["spec", "template"])
        .with_context(|| format!("{DEPLOYMENT}: no spec.template"))?;
    let pod = template
        .get("spec")
        .with_context(|| format!("{DEPLOYMENT}: no spec.template.spec"))?;
    let runtime_class_name = str_at(pod, &["runtimeClassName"]);
    problems.check(
        runtime_class_name == Some(class_name.as_str()),
        DEPLOYMENT,
        format_args!(
            "runtimeClassName is {runtime_class_name:?}, but the RuntimeClass in {RUNTIMECLASS} is {class_name:?}"
        ),
    );
    // The selector must select the pod template, or the API server refuses the Deployment.
    let selector = at(&deploy, &["spec", "selector", "matchLabels"])
        .and_then(Yaml::as_mapping)
        .cloned()
        .unwrap_or_default();
    problems.check(
        !selector.is_empty(),
        DEPLOYMENT,
        "no spec.selector.matchLabels",
    );
    for (key, value) in &selector {
        problems.check(
            at(template, &["metadata", "labels"]).and_then(|l| l.get(key)) == Some(value),
            DEPLOYMENT,
            format_args!("selector label {key:?}={value:?} is not on the pod template"),
        );
    }

    let containers = pod_containers(pod);
    let common = read(COMMON_SH)?;
    let image_files = wasm_image_files(&common);
    let testprog = read(TESTPROG_RS)?;
    let wasm: Vec<&Container> = containers
        .iter()
        .filter(|c| c.image == WASM_IMAGE)
        .collect();
    problems.check(
        wasm.iter().any(|c| !c.init),
        DEPLOYMENT,
        format_args!(
            "no container with the wasm image {WASM_IMAGE} (tests/e2e/src/images.rs WASM_IMAGE)"
        ),
    );
    for c in &containers {
        let (repo, _) = repo_and_tag(&c.image);
        if c.image != WASM_IMAGE && repo == "wasm" {
            problems.add(
                DEPLOYMENT,
                format_args!(
                    "container {:?} uses image {:?}, but the wasm image is {WASM_IMAGE}",
                    c.name, c.image
                ),
            );
        }
    }
    for c in &wasm {
        problems.check(
            c.pull.as_deref() == Some("Never"),
            DEPLOYMENT,
            format_args!(
                "container {:?}: the wasm image is built locally, so imagePullPolicy must be Never, not {:?}",
                c.name, c.pull
            ),
        );
        let entry = c
            .command
            .first()
            .map(String::as_str)
            .unwrap_or("/hello.wasm");
        problems.check(
            image_files.contains(entry),
            DEPLOYMENT,
            format_args!(
                "container {:?} runs {entry:?}, which {COMMON_SH} does not put into the wasm image (it adds {image_files:?})",
                c.name
            ),
        );
        if entry == "/testprog.wasm" {
            let mode = c.args.first().map(String::as_str).unwrap_or_default();
            problems.check(
                testprog.contains(&format!("(\"{mode}\",")),
                DEPLOYMENT,
                format_args!(
                    "container {:?}: testprog has no mode {mode:?} (see {TESTPROG_RS})",
                    c.name
                ),
            );
        }
        if !c.init {
            // A regular container that exits is restarted for ever: it must keep running.
            let long_running = entry == "/testprog.wasm"
                && match c.args.first().map(String::as_str) {
                    Some("busy") => true,
                    Some("sleep") => c
                        .args
                        .get(1)
                        .and_then(|s| s.parse::<f64>().ok())
                        .is_some_and(|secs| secs >= 3600.0),
                    _ => false,
                };
            problems.check(
                long_running,
                DEPLOYMENT,
                format_args!(
                    "wasm container {:?} ({entry} {:?}) exits soon and would be restarted for ever; use testprog `sleep SECS` (an hour or more)",
                    c.name, c.args
                ),
            );
        }
    }
    let nginx: Vec<&Container> = containers
        .iter()
        .filter(|c| !c.init && repo_and_tag(&c.image).0 == "nginx")
        .collect();
    problems.check(!nginx.is_empty(), DEPLOYMENT, "no nginx container");
    for c in nginx {
        let tag = repo_and_tag(&c.image).1;
        problems.check(
            tag.is_some_and(|t| t != "latest"),
            DEPLOYMENT,
            format_args!("nginx image {:?} is not pinned to a tag", c.image),
        );
        problems.check(
            ready_on_port_80(&c.spec),
            DEPLOYMENT,
            format_args!("container {:?} needs a readiness probe on port 80", c.name),
        );
    }

    // The names the scripts use (common.sh) are the Deployment's.
    let vars = shell_vars(&common);
    let deploy_name = str_at(&deploy, &["metadata", "name"]).unwrap_or_default();
    let script_deploy = shell_var(&vars, "WASMPOD_DEPLOYMENT")?;
    problems.check(
        script_deploy == deploy_name,
        COMMON_SH,
        format_args!(
            "WASMPOD_DEPLOYMENT={script_deploy:?}, but {DEPLOYMENT} is named {deploy_name:?}"
        ),
    );
    let script_selector = shell_var(&vars, "WASMPOD_SELECTOR")?;
    let selector_ok = script_selector
        .split_once('=')
        .is_some_and(|(k, v)| selector.get(k).and_then(Yaml::as_str) == Some(v));
    problems.check(
        selector_ok,
        COMMON_SH,
        format_args!(
            "WASMPOD_SELECTOR={script_selector:?} is not a label of {DEPLOYMENT}'s selector"
        ),
    );
    for var in ["WASMPOD_HELLO_CONTAINER", "WASMPOD_WASM_CONTAINER"] {
        let name = shell_var(&vars, var)?;
        problems.check(
            wasm.iter().any(|c| c.name == name),
            COMMON_SH,
            format_args!("{var}={name:?} is not a wasm container of {DEPLOYMENT}"),
        );
    }
    let script_image = shell_var(&vars, "WASMPOD_WASM_IMAGE")?;
    problems.check(
        script_image == WASM_IMAGE,
        COMMON_SH,
        format_args!("WASMPOD_WASM_IMAGE={script_image:?}, but tests/e2e/src/images.rs WASM_IMAGE is {WASM_IMAGE:?}"),
    );
    problems.check(
        common.contains(&HELLO_TXT.escape_default().to_string()),
        COMMON_SH,
        format_args!("the image's /data/hello.txt must hold HELLO_TXT {HELLO_TXT:?}"),
    );
    problems.finish()
}
