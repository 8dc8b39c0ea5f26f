//! `containerd --config FILE config dump`: containerd's own reading of a config, checked
//! before containerd is restarted onto it.

use std::path::Path;
use std::process::Command;

use toml_edit::DocumentMut;

use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::version::ConfigVersion;

/// The effective config containerd reads from `config` (imports merged, defaults filled in).
pub fn dump(containerd: &Path, config: &Path) -> Result<String> {
    let command = format!(
        "{} --config {} config dump",
        containerd.display(),
        config.display()
    );
    let out = Command::new(containerd)
        .arg("--config")
        .arg(config)
        .args(["config", "dump"])
        .output()
        .map_err(|e| Error::Command {
            command: command.clone(),
            detail: format!("{e} (is containerd installed? pass its path with --containerd)"),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks the dump of the new config: every handler is there with wasmpod's runtime type and,
/// when the dump of the old config is known, nothing else differs but the import list. The
/// error says what is wrong. `version` is the config's; the dump's own version wins.
pub fn verify(
    before: Option<&str>,
    after: &str,
    version: ConfigVersion,
    handlers: &[Handler],
) -> std::result::Result<(), String> {
    let parse = |text: &str| {
        text.parse::<DocumentMut>()
            .map_err(|e| format!("its dump is not TOML: {e}"))
    };
    let mut after_doc = parse(after)?;
    // containerd 2.x reads a version 2 config and dumps it as version 3.
    let version = crate::version::declared(&after_doc, Path::new("config dump"))
        .ok()
        .flatten()
        .unwrap_or(version);
    let found = crate::runtimes::registered(&after_doc, version);
    for handler in handlers {
        match found.get(&handler.name) {
            Some(t) if *t == handler.runtime_type() => {}
            Some(t) => return Err(format!("handler {} has runtime_type {t:?}", handler.name)),
            None => return Err(format!("handler {} is missing from its dump", handler.name)),
        }
    }
    let Some(before) = before else {
        return Ok(());
    };
    let mut before_doc = parse(before)?;
    for handler in handlers {
        remove_runtime(&mut after_doc, version, &handler.name);
        remove_runtime(&mut before_doc, version, &handler.name);
    }
    after_doc.remove("imports");
    before_doc.remove("imports");
    let (a, b) = (after_doc.to_string(), before_doc.to_string());
    if a == b {
        return Ok(());
    }
    let lost = b.lines().find(|line| !a.lines().any(|l| l == *line));
    let gained = a.lines().find(|line| !b.lines().any(|l| l == *line));
    let changed = match (lost, gained) {
        (Some(lost), Some(gained)) => format!("`{}` became `{}`", lost.trim(), gained.trim()),
        (Some(lost), None) => format!("`{}` is gone", lost.trim()),
        (None, Some(gained)) => format!("`{}` appeared", gained.trim()),
        (None, None) => "the order of its tables changed".into(),
    };
    Err(format!(
        "settings other than the handlers changed in containerd's effective config: {changed}"
    ))
}

fn remove_runtime(doc: &mut DocumentMut, version: ConfigVersion, name: &str) {
    let runtimes = doc
        .get_mut("plugins")
        .and_then(|p| p.get_mut(version.cri_runtime_plugin()))
        .and_then(|p| p.get_mut("containerd"))
        .and_then(|c| c.get_mut("runtimes"))
        .and_then(|r| r.as_table_like_mut());
    if let Some(runtimes) = runtimes {
        runtimes.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "imports = [\"/a.toml\"]\nversion = 2\n\n\
        [plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    sandbox_image = \"p:1\"\n\
        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n      runtime_type = \"io.containerd.runc.v2\"\n";

    fn with_wasmtime(text: &str) -> String {
        format!(
            "{text}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmtime]\n  \
             runtime_type = \"io.containerd.wasmtime.v1\"\n"
        )
    }

    fn wasmtime() -> Vec<Handler> {
        vec!["wasmtime".parse().unwrap()]
    }

    #[test]
    fn only_the_handlers_and_imports_may_differ() {
        let after = with_wasmtime(&BEFORE.replace("/a.toml", "/b.toml"));
        verify(Some(BEFORE), &after, ConfigVersion::V2, &wasmtime()).unwrap();
    }

    #[test]
    fn a_missing_handler_is_reported() {
        let err = verify(Some(BEFORE), BEFORE, ConfigVersion::V2, &wasmtime()).unwrap_err();
        assert!(err.contains("wasmtime is missing"), "{err}");
    }

    #[test]
    fn a_lost_setting_is_reported() {
        let after = with_wasmtime(&BEFORE.replace("p:1", "registry.k8s.io/pause:3.6"));
        let err = verify(Some(BEFORE), &after, ConfigVersion::V2, &wasmtime()).unwrap_err();
        assert!(err.contains("registry.k8s.io/pause:3.6"), "{err}");
        let without_runc = with_wasmtime(
            BEFORE
                .split("[plugins.\"io.containerd.grpc.v1.cri\".containerd")
                .next()
                .unwrap(),
        );
        assert!(verify(Some(BEFORE), &without_runc, ConfigVersion::V2, &wasmtime()).is_err());
    }

    #[test]
    fn a_v2_config_dumped_as_v3_is_read_as_v3() {
        let dump =
            "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasmtime]\n\
                    runtime_type = 'io.containerd.wasmtime.v1'\n";
        let wasmtime: Vec<Handler> = vec!["wasmtime".parse().unwrap()];
        verify(None, dump, ConfigVersion::V2, &wasmtime).unwrap();
    }
}
