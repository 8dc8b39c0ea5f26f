//! containerd's configs (the kind fragment, the k3s template, the README's tables): they parse,
//! name real shims and let the `wasmpod.io/` annotations through.

use anyhow::Result;
use serde_yaml::Value as Yaml;

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_yaml_and_toml_file_parses() -> Result<()> {
    let mut problems = Problems::default();
    for required in [
        FRAGMENT,
        TEMPLATE,
        RUNTIMECLASS,
        DEPLOYMENT,
        KIND_CONFIG,
        DOCKERFILE,
        RUN_SH,
        COMMON_SH,
        BOOTSTRAP_SH,
    ] {
        problems.check(root().join(required).is_file(), required, "missing");
    }
    for file in files_in(K8S)?.into_iter().chain(files_in(K3S)?) {
        let text = read(&file)?;
        if file.ends_with(".yaml") || file.ends_with(".yml") {
            // One document per file (serde_yaml refuses several, which is fine here).
            if let Err(e) = serde_yaml::from_str::<Yaml>(&text) {
                problems.add(&file, format_args!("YAML does not parse: {e}"));
            }
        } else if file.ends_with(".toml") {
            if let Err(e) = text.parse::<toml::Table>() {
                problems.add(&file, format_args!("TOML does not parse: {e}"));
            }
        } else if file.ends_with(".tmpl") {
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            problems.check(
                first.trim() == K3S_BASE,
                &file,
                format_args!(
                    "must start with {K3S_BASE} (k3s's own config), starts with {first:?}"
                ),
            );
            if let Err(e) = template_toml(&text).parse::<toml::Table>() {
                problems.add(
                    &file,
                    format_args!("TOML (template lines removed) does not parse: {e}"),
                );
            }
        }
    }
    problems.finish()
}

#[test]
fn containerd_runtime_types_name_shim_binaries() -> Result<()> {
    let types = runtime_types()?;
    let mut problems = Problems::default();
    for (file, config) in containerd_configs()? {
        match runtime_handlers(&file, &config) {
            Ok(handlers) => {
                for (handler, runtime_type) in handlers {
                    problems.check(
                        types.contains(&runtime_type),
                        &file,
                        format_args!(
                            "runtime handler {handler:?} has runtime_type {runtime_type:?}, but the shims built ({SHIM_CARGO}) provide only {types:?}"
                        ),
                    );
                }
            }
            Err(e) => problems.add(&file, format_args!("{e:#}")),
        }
    }
    problems.finish()
}

/// Without `pod_annotations` and `container_annotations` listing `wasmpod.io/*`, containerd's
/// CRI plugin drops the pods' `wasmpod.io/` annotations and the shim never sees them.
#[test]
fn runtime_tables_pass_wasmpod_annotations() -> Result<()> {
    let mut problems = Problems::default();
    for (file, config) in containerd_configs()? {
        let runtimes = RUNTIMES_PATH.iter().try_fold(&config, |node, key| {
            node.get(*key).and_then(toml::Value::as_table)
        });
        let Some(runtimes) = runtimes else {
            problems.add(&file, "no runtimes table");
            continue;
        };
        for (handler, table) in runtimes {
            for key in ["pod_annotations", "container_annotations"] {
                let listed = table
                    .get(key)
                    .and_then(toml::Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("wasmpod.io/*")));
                problems.check(
                    listed,
                    &file,
                    format_args!("runtime handler {handler:?}: {key} must list \"wasmpod.io/*\""),
                );
            }
        }
    }
    problems.finish()
}
