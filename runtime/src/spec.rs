//! Reading and validating the bundle's `config.json`, and the effective spec we hand to libcontainer.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Spec, SpecBuilder};

mod cgroup_v1;

/// A bundle's spec that cannot be used.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages show
pub enum SpecError {
    /// `config.json` is unreadable, too large or not a valid OCI spec.
    #[error("invalid config.json in {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// A valid spec that wasmpod cannot run (e.g. no `process.args`).
    #[error("bad spec: {0}")]
    Bad(String),
    /// The effective spec could not be written.
    #[error("writing effective spec to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The largest `config.json` read: its annotations and env come from the tenant, and the whole
/// file is held in memory (and parsed) by the shim.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Loads `<bundle>/config.json`, naming the file and the parse error on failure.
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    let text = read_bounded(&path, MAX_CONFIG_BYTES).map_err(|reason| SpecError::Invalid {
        path: path.clone(),
        reason,
    })?;
    let spec: Spec = serde_json::from_str(&text).map_err(|e| SpecError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    validate(&spec)?;
    Ok(spec)
}

/// Reads a regular file of at most `max` bytes as UTF-8 text.
fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_string());
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "larger than the limit of {max} bytes ({} MiB)",
            max >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
}

pub(crate) fn validate(spec: &Spec) -> Result<(), SpecError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| SpecError::Bad("no process section".into()))?;
    let args = process.args().as_deref().unwrap_or_default();
    if args.first().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::Bad("process.args is empty".into()));
    }
    if spec.root().is_none() {
        return Err(SpecError::Bad("no root section".into()));
    }
    Ok(())
}

/// `process.args`, already validated to be non-empty.
pub fn args(spec: &Spec) -> &[String] {
    spec.process()
        .as_ref()
        .and_then(|p| p.args().as_deref())
        .unwrap_or_default()
}

/// `process.env` as `KEY=VALUE` strings.
pub fn env(spec: &Spec) -> &[String] {
    spec.process()
        .as_ref()
        .and_then(|p| p.env().as_deref())
        .unwrap_or_default()
}

/// Value of one variable of `process.env`.
pub fn env_var<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    env(spec)
        .iter()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Value of one of the spec's annotations.
pub fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    spec.annotations().as_ref()?.get(key).map(String::as_str)
}

/// Where containerd's rootfs mounts go: `<bundle>/rootfs`, the only place a shim mounts (and
/// the only one its cleanup unmounts). A spec whose `root.path` is elsewhere while containerd
/// passes mounts is refused: mounting there would cover a host directory.
pub fn mount_target(spec: &Spec, bundle: &Path, has_mounts: bool) -> Result<PathBuf, SpecError> {
    let root = rootfs(spec, bundle);
    let own = bundle.join("rootfs");
    if has_mounts && root != own {
        return Err(SpecError::Bad(format!(
            "root.path {} is outside the bundle, but containerd passed rootfs mounts for {}",
            root.display(),
            own.display()
        )));
    }
    Ok(root)
}

/// The rootfs path of the spec, made absolute against the bundle.
pub fn rootfs(spec: &Spec, bundle: &Path) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    }
}

/// Splits the `module.wasm#func` entrypoint syntax into the path and the export to call.
pub fn split_entry(arg0: &str) -> (&str, Option<&str>) {
    match arg0.rsplit_once('#') {
        Some((path, func)) if !func.is_empty() && !func.contains('/') => (path, Some(func)),
        _ => (arg0, None),
    }
}

/// Whether this process may set `oom_score_adj` to `value`: raising it is always allowed,
/// lowering it needs CAP_SYS_RESOURCE, which some hosts do not grant even to root.
fn oom_score_adj_allowed(value: i32) -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let current = fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if current.is_some_and(|c| value >= c) {
        return true;
    }
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Writes the spec libcontainer will use to `<dir>/config.json`: root made absolute so the
/// bundle can live elsewhere, an `oomScoreAdj` this host refuses dropped with a warning, and
/// a v1 `cgroup` mount spelled out where libcontainer cannot make it (`cgroup_v1`).
/// Returns the directory, to be used as libcontainer's bundle.
pub fn write_effective(spec: &Spec, bundle: &Path, dir: &Path) -> Result<PathBuf, SpecError> {
    let mut spec = spec.clone();
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(rootfs(&spec, bundle));
    spec.set_root(Some(root));

    if let Some(mut process) = spec.process().clone() {
        if let Some(adj) = process.oom_score_adj() {
            if !oom_score_adj_allowed(adj) {
                tracing::warn!(
                    oom_score_adj = adj,
                    "host refuses this oom_score_adj (needs CAP_SYS_RESOURCE); container keeps the shim's value"
                );
                process.set_oom_score_adj(None);
            }
        }
        spec.set_process(Some(process));
    }

    cgroup_v1::spell_out_for_joined_pid_namespace(&mut spec);

    fs::create_dir_all(dir).map_err(|source| SpecError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("config.json");
    let text = serde_json::to_string(&spec).map_err(|e| SpecError::Bad(e.to_string()))?;
    fs::write(&path, text).map_err(|source| SpecError::Write { path, source })?;
    Ok(dir.to_path_buf())
}

/// A minimal valid spec, for tests.
pub fn example() -> Spec {
    SpecBuilder::default().build().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_syntax() {
        assert_eq!(split_entry("/app.wasm#greet"), ("/app.wasm", Some("greet")));
        assert_eq!(split_entry("/app.wasm"), ("/app.wasm", None));
        assert_eq!(split_entry("/app.wasm#"), ("/app.wasm#", None));
        assert_eq!(split_entry("/we#ird/app.wasm"), ("/we#ird/app.wasm", None));
    }

    #[test]
    fn invalid_json_names_file_and_cause() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config.json"), "{ not json").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        assert!(err.contains("key must be a string"), "{err}");
    }

    #[test]
    fn oversized_config_is_refused_with_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = fs::File::create(dir.path().join("config.json")).unwrap();
        file.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        assert!(
            err.contains("larger than the limit of 16777216 bytes"),
            "{err}"
        );
    }

    #[test]
    fn mounts_go_only_to_the_bundle_rootfs() {
        let bundle = Path::new("/b");
        let mut spec = example();
        let at = |path: &str| {
            oci_spec::runtime::RootBuilder::default()
                .path(path)
                .build()
                .unwrap()
        };
        spec.set_root(Some(at("rootfs")));
        assert_eq!(
            mount_target(&spec, bundle, true).unwrap(),
            bundle.join("rootfs")
        );
        spec.set_root(Some(at("/host/dir")));
        assert_eq!(
            mount_target(&spec, bundle, false).unwrap(),
            Path::new("/host/dir")
        );
        let err = mount_target(&spec, bundle, true).unwrap_err().to_string();
        assert!(
            err.contains("root.path /host/dir is outside the bundle"),
            "{err}"
        );
    }

    #[test]
    fn unknown_namespace_type_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(example()).unwrap();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "bogus"}]);
        fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn empty_args_is_bad_spec() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(example()).unwrap();
        v["process"]["args"] = serde_json::json!([]);
        fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("process.args is empty"), "{err}");
    }

    #[test]
    fn env_lookup() {
        let mut spec = example();
        let mut p = spec.process().clone().unwrap();
        p.set_env(Some(vec!["PATH=/bin".into(), "A=b=c".into()]));
        spec.set_process(Some(p));
        assert_eq!(env_var(&spec, "A"), Some("b=c"));
        assert_eq!(env_var(&spec, "PATH"), Some("/bin"));
        assert_eq!(env_var(&spec, "PAT"), None);
    }
}
