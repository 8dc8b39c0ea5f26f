//! Paths, parsers and checks shared by the cluster-file tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_yaml::Value as Yaml;

pub const K8S: &str = "test/k8s";
pub const K3S: &str = "test/k3s";
pub const FRAGMENT: &str = "test/k8s/containerd-wasmtime.toml";
pub const TEMPLATE: &str = "test/k3s/config.toml.tmpl";
pub const RUNTIMECLASS: &str = "test/k8s/runtimeclass.yaml";
pub const DEPLOYMENT: &str = "test/k8s/deployment.yaml";
pub const KIND_CONFIG: &str = "test/k8s/kind-config.yaml";
pub const DOCKERFILE: &str = "test/k8s/Dockerfile";
pub const RUN_SH: &str = "test/k8s/run.sh";
pub const COMMON_SH: &str = "test/k8s/common.sh";
pub const BOOTSTRAP_SH: &str = "test/k3s/bootstrap.sh";
/// The manifests with shim binaries: each engine's (the binary lives with its engine) and the
/// example's (README, "Build your own shim").
pub const SHIM_CARGOS: &[&str] = &[
    "executors/wasmtime/Cargo.toml",
    "executors/wasmer/Cargo.toml",
    "executors/wasmedge/Cargo.toml",
    "examples/custom-host/Cargo.toml",
];
/// How messages name [`SHIM_CARGOS`].
pub const SHIM_CARGO: &str =
    "the shim manifests (executors/*/Cargo.toml, examples/custom-host/Cargo.toml)";
pub const TESTPROG_RS: &str = "tests/fixtures/wasm-src/src/bin/testprog.rs";
/// The first line k3s's template must have, so that k3s's own config is kept.
pub const K3S_BASE: &str = r#"{{ template "base" . }}"#;
/// Where containerd's CRI plugin (config version 2) keeps its runtime handlers.
pub const RUNTIMES_PATH: [&str; 4] = [
    "plugins",
    "io.containerd.grpc.v1.cri",
    "containerd",
    "runtimes",
];

// ---------------------------------------------------------------------------------------------
// Helpers

/// Collects every mismatch of one test, so that one run reports all of them.
#[derive(Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn add(&mut self, file: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{file}: {msg}"));
    }

    pub fn check(&mut self, ok: bool, file: &str, msg: impl std::fmt::Display) {
        if !ok {
            self.add(file, msg);
        }
    }

    pub fn finish(self) -> Result<()> {
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
pub fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

pub fn read(rel: &str) -> Result<String> {
    std::fs::read_to_string(root().join(rel)).with_context(|| format!("{rel}: cannot read it"))
}

pub fn yaml(rel: &str) -> Result<Yaml> {
    serde_yaml::from_str(&read(rel)?).with_context(|| format!("{rel}: not valid YAML"))
}

pub fn toml_table(rel: &str, text: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>()
        .with_context(|| format!("{rel}: not valid TOML"))
}

/// The k3s template as TOML: its `{{ ... }}` template lines removed (k3s renders them).
pub fn template_toml(text: &str) -> String {
    text.lines()
        .filter(|line| {
            let line = line.trim();
            !(line.starts_with("{{") && line.ends_with("}}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `v[a][b]...`, for mappings.
pub fn at<'a>(v: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    path.iter().try_fold(v, |v, key| v.get(*key))
}

pub fn str_at<'a>(v: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Yaml::as_str)
}

pub fn strings(v: Option<&Yaml>) -> Vec<String> {
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
pub fn files_in(dir: &str) -> Result<Vec<String>> {
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
pub fn shim_bins() -> Result<BTreeSet<String>> {
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
pub fn engine_of_bin(bin: &str) -> Option<&str> {
    bin.strip_prefix("containerd-shim-")?.strip_suffix("-v1")
}

/// The runtime types containerd maps to the shim binaries: `io.containerd.<e>.v1`.
pub fn runtime_types() -> Result<BTreeSet<String>> {
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
pub fn runtime_handlers(file: &str, config: &toml::Table) -> Result<BTreeMap<String, String>> {
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
pub fn containerd_configs() -> Result<Vec<(String, toml::Table)>> {
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
pub fn runtime_class(problems: &mut Problems) -> Result<(String, String)> {
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
pub struct Container {
    pub name: String,
    pub init: bool,
    pub image: String,
    pub pull: Option<String>,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub spec: Yaml,
}

pub fn pod_containers(pod: &Yaml) -> Vec<Container> {
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
pub fn repo_and_tag(image: &str) -> (&str, Option<&str>) {
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
pub fn ready_on_port_80(c: &Yaml) -> bool {
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
pub fn shell_vars(text: &str) -> BTreeMap<String, String> {
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

pub fn shell_var(vars: &BTreeMap<String, String>, name: &str) -> Result<String> {
    vars.get(name)
        .cloned()
        .with_context(|| format!("{COMMON_SH}: no {name}=... assignment"))
}

/// The paths `common.sh` puts into the wasm image (`--file "/path=host"`).
pub fn wasm_image_files(common: &str) -> BTreeSet<String> {
    common
        .split("--file \"")
        .skip(1)
        .filter_map(|rest| rest.split_once('=').map(|(path, _)| path.to_string()))
        .collect()
}

/// Every `<prefix><word><suffix>` in `text` where word is `[a-z0-9_]+` and the next character
/// is not `.` (so `io.containerd.grpc.v1.cri` is not a runtime name).
pub fn tokens(text: &str, prefix: &str, suffix: &str) -> Vec<String> {
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
pub fn pinned_kind_node(image: &str) -> bool {
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
pub fn pinned_k3s(version: &str) -> bool {
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
pub fn dockerfile_instructions(text: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
