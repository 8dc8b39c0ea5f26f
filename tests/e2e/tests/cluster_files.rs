//! Keeps the real-cluster files honest. `test/k8s` (kind) and `test/k3s` need docker, kind,
//! kubectl, systemd and network, so `make test` cannot run them; it checks here, on any machine
//! and without root, that they parse and agree with the code and with each other: the runtime
//! names against the shim's `[[bin]]` names, the containerd handlers against the RuntimeClass,
//! the Deployment against the RuntimeClass and the e2e wasm image, and the scripts and the
//! Makefile targets against the files they use. Every failure names the file and the mismatch.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_yaml::Value as Yaml;
use wasmpod_e2e::images::HELLO_TXT;
use wasmpod_e2e::WASM_IMAGE;

const K8S: &str = "test/k8s";
const K3S: &str = "test/k3s";
const FRAGMENT: &str = "test/k8s/containerd-wasmtime.toml";
const TEMPLATE: &str = "test/k3s/config.toml.tmpl";
const RUNTIMECLASS: &str = "test/k8s/runtimeclass.yaml";
const DEPLOYMENT: &str = "test/k8s/deployment.yaml";
const KIND_CONFIG: &str = "test/k8s/kind-config.yaml";
const DOCKERFILE: &str = "test/k8s/Dockerfile";
const RUN_SH: &str = "test/k8s/run.sh";
const COMMON_SH: &str = "test/k8s/common.sh";
const BOOTSTRAP_SH: &str = "test/k3s/bootstrap.sh";
/// The manifests with shim binaries: each engine's (the binary lives with its engine) and the
/// example's (README, "Build your own shim").
const SHIM_CARGOS: &[&str] = &[
    "executors/wasmtime/Cargo.toml",
    "executors/wasmer/Cargo.toml",
    "executors/wasmedge/Cargo.toml",
    "examples/custom-host/Cargo.toml",
];
/// How messages name [`SHIM_CARGOS`].
const SHIM_CARGO: &str =
    "the shim manifests (executors/*/Cargo.toml, examples/custom-host/Cargo.toml)";
const TESTPROG_RS: &str = "tests/fixtures/wasm-src/src/bin/testprog.rs";
/// The first line k3s's template must have, so that k3s's own config is kept.
const K3S_BASE: &str = r#"{{ template "base" . }}"#;
/// Where containerd's CRI plugin (config version 2) keeps its runtime handlers.
const RUNTIMES_PATH: [&str; 4] = [
    "plugins",
    "io.containerd.grpc.v1.cri",
    "containerd",
    "runtimes",
];

// ---------------------------------------------------------------------------------------------
// Helpers

/// Collects every mismatch of one test, so that one run reports all of them.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, file: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{file}: {msg}"));
    }

    fn check(&mut self, ok: bool, file: &str, msg: impl std::fmt::Display) {
        if !ok {
            self.add(file, msg);
        }
    }

    fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        bail!(
            "{} problem(s) in the cluster files:\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        )
    }
}

/// The workspace root.
fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn read(rel: &str) -> Result<String> {
    std::fs::read_to_string(root().join(rel)).with_context(|| format!("{rel}: cannot read it"))
}

fn yaml(rel: &str) -> Result<Yaml> {
    serde_yaml::from_str(&read(rel)?).with_context(|| format!("{rel}: not valid YAML"))
}

fn toml_table(rel: &str, text: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>()
        .with_context(|| format!("{rel}: not valid TOML"))
}

/// The k3s template as TOML: its `{{ ... }}` template lines removed (k3s renders them).
fn template_toml(text: &str) -> String {
    text.lines()
        .filter(|line| {
            let line = line.trim();
            !(line.starts_with("{{") && line.ends_with("}}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `v[a][b]...`, for mappings.
fn at<'a>(v: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    path.iter().try_fold(v, |v, key| v.get(*key))
}

fn str_at<'a>(v: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Yaml::as_str)
}

fn strings(v: Option<&Yaml>) -> Vec<String> {
    v.and_then(Yaml::as_sequence)
        .map(|items| {
            items
                .iter()
                .map(|item| match item {
                    Yaml::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The files directly in `dir` (relative to the root), sorted.
fn files_in(dir: &str) -> Result<Vec<String>> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
        .with_context(|| format!("{dir}: cannot list it"))?
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
        .collect();
    files.sort();
    Ok(files)
}

/// `[[bin]]` names of [`SHIM_CARGOS`], e.g. `containerd-shim-wasmtime-v1`.
fn shim_bins() -> Result<BTreeSet<String>> {
    let mut bins = BTreeSet::new();
    for &cargo in SHIM_CARGOS {
        let manifest = toml_table(cargo, &read(cargo)?)?;
        let found: BTreeSet<String> = manifest
            .get("bin")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|bin| bin.get("name").and_then(toml::Value::as_str))
            .map(str::to_string)
            .collect();
        if found.is_empty() {
            bail!("{cargo}: no [[bin]] targets");
        }
        bins.extend(found);
    }
    Ok(bins)
}

/// The engine `<e>` of a shim binary `containerd-shim-<e>-v1`.
fn engine_of_bin(bin: &str) -> Option<&str> {
    bin.strip_prefix("containerd-shim-")?.strip_suffix("-v1")
}

/// The runtime types containerd maps to the shim binaries: `io.containerd.<e>.v1`.
fn runtime_types() -> Result<BTreeSet<String>> {
    let bins = shim_bins()?;
    let mut types = BTreeSet::new();
    for bin in &bins {
        let engine = engine_of_bin(bin)
            .with_context(|| format!("{SHIM_CARGO}: [[bin]] {bin:?} is not containerd-shim-<engine>-v1, so containerd cannot run it"))?;
        types.insert(format!("io.containerd.{engine}.v1"));
    }
    Ok(types)
}

/// The CRI runtime handlers of a containerd config: handler name -> runtime_type.
fn runtime_handlers(file: &str, config: &toml::Table) -> Result<BTreeMap<String, String>> {
    let mut node = config;
    for key in RUNTIMES_PATH {
        node = node
            .get(key)
            .and_then(toml::Value::as_table)
            .with_context(|| {
                format!(
                    "{file}: no table {} (containerd config version 2)",
                    RUNTIMES_PATH.map(|k| format!("{k:?}")).join(".")
                )
            })?;
    }
    let mut handlers = BTreeMap::new();
    for (handler, table) in node {
        let runtime_type = table
            .get("runtime_type")
            .and_then(toml::Value::as_str)
            .with_context(|| format!("{file}: runtime handler {handler:?} has no runtime_type"))?;
        handlers.insert(handler.clone(), runtime_type.to_string());
    }
    if handlers.is_empty() {
        bail!("{file}: the runtimes table names no runtime handler");
    }
    Ok(handlers)
}

/// The containerd configs under test: the kind fragment, the k3s template, and every ```toml
/// block of the README that defines runtime handlers.
fn containerd_configs() -> Result<Vec<(String, toml::Table)>> {
    let mut configs = vec![
        (
            FRAGMENT.to_string(),
            toml_table(FRAGMENT, &read(FRAGMENT)?)?,
        ),
        (
            TEMPLATE.to_string(),
            toml_table(TEMPLATE, &template_toml(&read(TEMPLATE)?))?,
        ),
    ];
    let readme = read("README.md")?;
    for (i, block) in readme.split("```toml").skip(1).enumerate() {
        let block = block.split("```").next().unwrap_or_default();
        if block.contains("runtimes.") {
            let name = format!("README.md (```toml block {})", i + 1);
            let table = toml_table(&name, &template_toml(block))?;
            configs.push((name, table));
        }
    }
    Ok(configs)
}

/// The RuntimeClass: (name, handler).
fn runtime_class(problems: &mut Problems) -> Result<(String, String)> {
    let rc = yaml(RUNTIMECLASS)?;
    problems.check(
        str_at(&rc, &["apiVersion"]) == Some("node.k8s.io/v1"),
        RUNTIMECLASS,
        "apiVersion must be node.k8s.io/v1",
    );
    problems.check(
        str_at(&rc, &["kind"]) == Some("RuntimeClass"),
        RUNTIMECLASS,
        "kind must be RuntimeClass",
    );
    let name = str_at(&rc, &["metadata", "name"])
        .with_context(|| format!("{RUNTIMECLASS}: no metadata.name"))?;
    let handler =
        str_at(&rc, &["handler"]).with_context(|| format!("{RUNTIMECLASS}: no handler"))?;
    Ok((name.to_string(), handler.to_string()))
}

/// One container of the Deployment's pod.
struct Container {
    name: String,
    init: bool,
    image: String,
    pull: Option<String>,
    command: Vec<String>,
    args: Vec<String>,
    spec: Yaml,
}

fn pod_containers(pod: &Yaml) -> Vec<Container> {
    let mut out = Vec::new();
    for (key, init) in [("initContainers", true), ("containers", false)] {
        let Some(list) = pod.get(key).and_then(Yaml::as_sequence) else {
            continue;
        };
        for c in list {
            out.push(Container {
                name: str_at(c, &["name"]).unwrap_or_default().to_string(),
                init,
                image: str_at(c, &["image"]).unwrap_or_default().to_string(),
                pull: str_at(c, &["imagePullPolicy"]).map(str::to_string),
                command: strings(c.get("command")),
                args: strings(c.get("args")),
                spec: c.clone(),
            });
        }
    }
    out
}

/// `nginx` for `docker.io/library/nginx:1.27.3`; the tag (or digest) if any.
fn repo_and_tag(image: &str) -> (&str, Option<&str>) {
    let (image, digest) = match image.split_once('@') {
        Some((image, digest)) => (image, Some(digest)),
        None => (image, None),
    };
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((repo, tag)) => (repo, digest.or(Some(tag))),
        None => (last, digest),
    }
}

/// Whether the readiness probe of `c` checks port 80 (by number or by a named containerPort).
fn ready_on_port_80(c: &Yaml) -> bool {
    let Some(probe) = c.get("readinessProbe") else {
        return false;
    };
    let port = at(probe, &["httpGet", "port"]).or_else(|| at(probe, &["tcpSocket", "port"]));
    match port {
        Some(Yaml::Number(n)) => n.as_u64() == Some(80),
        Some(Yaml::String(name)) => c
            .get("ports")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .any(|p| {
                str_at(p, &["name"]) == Some(name.as_str())
                    && at(p, &["containerPort"]).and_then(Yaml::as_u64) == Some(80)
            }),
        _ => false,
    }
}

/// `NAME=value` assignments at the start of a line of a shell script (quotes removed).
fn shell_vars(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once('=')?;
            let ok = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            ok.then(|| (name.to_string(), value.trim_matches('"').to_string()))
        })
        .collect()
}

fn shell_var(vars: &BTreeMap<String, String>, name: &str) -> Result<String> {
    vars.get(name)
        .cloned()
        .with_context(|| format!("{COMMON_SH}: no {name}=... assignment"))
}

/// The paths `common.sh` puts into the wasm image (`--file "/path=host"`).
fn wasm_image_files(common: &str) -> BTreeSet<String> {
    common
        .split("--file \"")
        .skip(1)
        .filter_map(|rest| rest.split_once('=').map(|(path, _)| path.to_string()))
        .collect()
}

/// Every `<prefix><word><suffix>` in `text` where word is `[a-z0-9_]+` and the next character
/// is not `.` (so `io.containerd.grpc.v1.cri` is not a runtime name).
fn tokens(text: &str, prefix: &str, suffix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        rest = &rest[i + prefix.len()..];
        let word_len = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let after = &rest[word_len..];
        if word_len > 0 && after.starts_with(suffix) && !after[suffix.len()..].starts_with('.') {
            out.push(format!("{prefix}{}{suffix}", &rest[..word_len]));
        }
    }
    out
}

/// `kindest/node:v1.29.<patch>@sha256:<64 hex>`.
fn pinned_kind_node(image: &str) -> bool {
    let Some((reference, digest)) = image.split_once('@') else {
        return false;
    };
    let patch_ok = reference
        .strip_prefix("kindest/node:v1.29.")
        .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let digest_ok = digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
    patch_ok && digest_ok
}

/// `v1.29.<patch>+k3s<n>`.
fn pinned_k3s(version: &str) -> bool {
    let Some((patch, build)) = version
        .strip_prefix("v1.29.")
        .and_then(|rest| rest.split_once("+k3s"))
    else {
        return false;
    };
    [patch, build]
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Dockerfile instructions with continuation lines joined and comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

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

#[test]
fn helpers_catch_wrong_names() {
    // The parsers the checks rely on, on inputs where a name is wrong.
    assert_eq!(
        engine_of_bin("containerd-shim-wasmtime-v1"),
        Some("wasmtime")
    );
    assert_eq!(engine_of_bin("wasmpod-shim"), None);
    assert_eq!(
        tokens(
            r#"[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.x] runtime_type = "io.containerd.wasmtim.v1""#,
            "io.containerd.",
            ".v1"
        ),
        vec!["io.containerd.wasmtim.v1".to_string()]
    );
    assert!(pinned_kind_node(
        "kindest/node:v1.29.2@sha256:51a1434a5397193442f0be2a297b488b6c919ce8a3931be0ce822606ea5ca245"
    ));
    assert!(!pinned_kind_node("kindest/node:v1.29.2"));
    assert!(!pinned_kind_node("kindest/node:latest@sha256:00"));
    assert!(pinned_k3s("v1.29.4+k3s1"));
    assert!(!pinned_k3s("v1.29+k3s1"));
    assert!(!pinned_k3s("latest"));
    assert_eq!(
        repo_and_tag("docker.io/library/nginx:1.27.3"),
        ("nginx", Some("1.27.3"))
    );
    assert_eq!(repo_and_tag("nginx"), ("nginx", None));
    assert_eq!(
        template_toml("{{ template \"base\" . }}\n[a]\nb = 1"),
        "[a]\nb = 1"
    );
    let toml: toml::Table = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.other]\nruntime_type = \"io.containerd.runc.v2\"".parse().unwrap();
    let handlers = runtime_handlers("x", &toml).unwrap();
    assert_eq!(
        handlers.get("other").map(String::as_str),
        Some("io.containerd.runc.v2")
    );
    assert!(runtime_handlers("x", &toml::Table::new()).is_err());
}

// ---------------------------------------------------------------------------------------------
// wasmpod-node's DaemonSet and the script writing its image

const NODE_INSTALLER: &str = "test/k8s/node-installer.yaml";
const NODE_IMAGE_SH: &str = "test/k8s/node-installer-image.sh";
const NODE_CLI: &str = "tools/node/src/cli.rs";
/// Where the image keeps what the DaemonSet copies to the node.
const PAYLOAD_IN_IMAGE: &str = "/opt/wasmpod/";
/// The node directory the DaemonSet mounts (and wasmpod-node's default state directory).
const NODE_STATE_DIR: &str = "/var/lib/wasmpod-node";
/// nsenter's options, not wasmpod-node's.
const NSENTER_OPTIONS: &[&str] = &["--target", "--mount", "--uts", "--ipc", "--net", "--pid"];

/// The words following each `flag ` in `text`.
fn values_after(text: &str, flag: &str) -> BTreeSet<String> {
    text.split(&format!("{flag} "))
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|w| w.trim_matches('"').to_string())
        .collect()
}

#[test]
fn node_installer_daemonset_runtime_classes_and_image_agree() -> Result<()> {
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
