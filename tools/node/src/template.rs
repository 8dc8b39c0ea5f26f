//! k3s and RKE2: their containerd config is rendered from `config.toml.tmpl` (config version 2)
//! or `config-v3.toml.tmpl` (version 3) at every start, so wasmpod-node edits the template.
//! A template is a Go template, not TOML: its `{{ ... }}` lines are set aside while reading it,
//! and the handlers are appended as plain TOML tables.

use std::path::{Path, PathBuf};

use toml_edit::DocumentMut;

use crate::error::Result;
use crate::handler::Handler;
use crate::runtimes;
use crate::version::{self, ConfigVersion};

/// First line of a new template: k3s's own config, to which the handlers are added.
pub const BASE_LINE: &str = "{{ template \"base\" . }}\n";
pub const V2_NAME: &str = "config.toml.tmpl";
pub const V3_NAME: &str = "config-v3.toml.tmpl";

/// Whether `path` is a k3s/RKE2 template rather than a config.
pub fn is_template(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "tmpl")
}

/// The template k3s/RKE2 reads in `dir` (where it renders `config.toml`): an existing one,
/// else the one matching the version of the rendered config.
pub fn path_in(dir: &Path) -> PathBuf {
    for name in [V3_NAME, V2_NAME] {
        if dir.join(name).exists() {
            return dir.join(name);
        }
    }
    let rendered = std::fs::read_to_string(dir.join("config.toml")).unwrap_or_default();
    let rendered_v3 = version::parse(&rendered, dir)
        .ok()
        .and_then(|doc| version::declared(&doc, dir).ok().flatten())
        == Some(ConfigVersion::V3);
    dir.join(if rendered_v3 { V3_NAME } else { V2_NAME })
}

/// The template with its template lines blanked (line numbers stay), as TOML.
pub fn masked(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim();
            if trimmed.starts_with("{{") && trimmed.ends_with("}}") {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The TOML part of a template.
pub fn parse(text: &str, path: &Path) -> Result<DocumentMut> {
    version::parse(&masked(text), path)
}

/// The config version of the template at `path`: declared in it, else by its file name (the
/// version is usually in k3s's base template, not in the file).
pub fn version_of(doc: &DocumentMut, path: &Path) -> Result<ConfigVersion> {
    if doc.contains_key("version") {
        if let Some(declared) = version::declared(doc, path)? {
            return Ok(declared);
        }
    }
    let v3 = path.file_name().is_some_and(|n| n == V3_NAME);
    Ok(if v3 {
        ConfigVersion::V3
    } else {
        ConfigVersion::V2
    })
}

/// The new template text, or `None` when every handler is there already. `original` is
/// `None` when there is no template yet: then k3s's base config is kept by [`BASE_LINE`].
pub fn edited(
    original: Option<&str>,
    path: &Path,
    handlers: &[Handler],
    bin_dir: &Path,
) -> Result<Option<String>> {
    let doc = parse(original.unwrap_or_default(), path)?;
    let version = version_of(&doc, path)?;
    let missing = runtimes::missing(&doc, version, handlers, path)?;
    if missing.is_empty() {
        return Ok(None);
    }
    let mut added = DocumentMut::new();
    runtimes::add(&mut added, version, &missing, bin_dir, path)?;
    let mut text = original.unwrap_or(BASE_LINE).to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&added.to_string());
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S_TMPL: &str = "{{ template \"base\" . }}\n\n\
        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.spin]\n  \
        runtime_type = \"io.containerd.spin.v2\"\n";

    #[test]
    fn handlers_are_appended_to_a_template() {
        let path = Path::new("/x/config.toml.tmpl");
        let out = edited(
            Some(K3S_TMPL),
            path,
            &Handler::defaults(),
            Path::new("/usr/local/bin"),
        )
        .unwrap()
        .unwrap();
        assert!(out.starts_with(K3S_TMPL), "{out}");
        assert!(
            out.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmer]"),
            "{out}"
        );
        let again = edited(
            Some(&out),
            path,
            &Handler::defaults(),
            Path::new("/usr/local/bin"),
        );
        assert_eq!(again.unwrap(), None, "a second install changes nothing");
    }

    #[test]
    fn a_new_template_keeps_the_base_config() {
        let path = Path::new("/x/config-v3.toml.tmpl");
        let out = edited(None, path, &Handler::defaults(), Path::new("/b"))
            .unwrap()
            .unwrap();
        assert!(out.starts_with(BASE_LINE), "{out}");
        assert!(
            out.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.wasmtime]"),
            "{out}"
        );
    }

    #[test]
    fn template_lines_inside_tables_are_ignored() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n\
                    {{- if .NodeConfig.AgentConfig.Snapshotter }}\n\
                    sandbox_image = \"{{ .NodeConfig.AgentConfig.PauseImage }}\"\n{{ end }}\n";
        let out = edited(
            Some(text),
            Path::new("/x/config.toml.tmpl"),
            &Handler::defaults(),
            Path::new("/b"),
        )
        .unwrap()
        .unwrap();
        assert!(out.starts_with(text), "{out}");
    }

    #[test]
    fn a_taken_name_in_a_template_is_refused() {
        let taken = "{{ template \"base\" . }}\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmtime]\n\
                     runtime_type = \"io.containerd.spin.v2\"\n";
        let err = edited(
            Some(taken),
            Path::new("/x/config.toml.tmpl"),
            &Handler::defaults(),
            Path::new("/b"),
        );
        assert!(err.is_err());
    }
}
