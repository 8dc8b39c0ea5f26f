//! containerd config versions: which one a file is, and where its CRI runtimes live.

use std::path::Path;
use std::process::Command;

use toml_edit::DocumentMut;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigVersion {
    /// containerd 1.6 and 1.7.
    V2,
    /// containerd 2.x.
    V3,
}

impl ConfigVersion {
    pub fn number(self) -> i64 {
        match self {
            ConfigVersion::V2 => 2,
            ConfigVersion::V3 => 3,
        }
    }

    /// The plugin whose `containerd.runtimes` holds the CRI runtime handlers.
    pub fn cri_runtime_plugin(self) -> &'static str {
        match self {
            ConfigVersion::V2 => "io.containerd.grpc.v1.cri",
            ConfigVersion::V3 => "io.containerd.cri.v1.runtime",
        }
    }

    /// The config version a containerd of `major` version reads natively.
    pub fn for_containerd_major(major: u64) -> Option<Self> {
        match major {
            1 => Some(ConfigVersion::V2),
            2 => Some(ConfigVersion::V3),
            _ => None,
        }
    }
}

/// The version `doc` declares. `None` when it declares none and has no settings either (an
/// empty or comment-only file, which containerd reads as its defaults).
pub fn declared(doc: &DocumentMut, path: &Path) -> Result<Option<ConfigVersion>> {
    let unsupported = |found: String, hint| Error::UnsupportedVersion {
        path: path.to_path_buf(),
        found,
        hint,
    };
    match doc.get("version") {
        None if doc.is_empty() => Ok(None),
        None => Err(unsupported(
            "1 (no `version` key)".into(),
            "; migrate it with `containerd config migrate` (2.x) or write `version = 2` \
             settings (1.x)",
        )),
        Some(item) => match item.as_integer() {
            Some(2) => Ok(Some(ConfigVersion::V2)),
            Some(3) => Ok(Some(ConfigVersion::V3)),
            _ => Err(unsupported(
                item.as_value()
                    .map(|v| v.to_string().trim().to_string())
                    .unwrap_or_else(|| "<a table>".into()),
                "",
            )),
        },
    }
}

/// The major version `containerd --version` reports, e.g. 1 for
/// `containerd github.com/containerd/containerd 1.6.20~ds1 ...`.
pub fn containerd_major(containerd: &Path) -> Result<u64> {
    let command = format!("{} --version", containerd.display());
    let out = Command::new(containerd)
        .arg("--version")
        .output()
        .map_err(|e| Error::Command {
            command: command.clone(),
            detail: format!(
                "{e}: the config declares no version, so containerd's decides; pass --containerd \
                 or write `version = 2` (containerd 1.x) or `version = 3` (2.x) into it"
            ),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_major(&text).ok_or(Error::Command {
        command,
        detail: format!("no version in its output: {}", text.trim()),
    })
}

fn parse_major(version_output: &str) -> Option<u64> {
    version_output.split_whitespace().find_map(|word| {
        let word = word.strip_prefix('v').unwrap_or(word);
        let (major, rest) = word.split_once('.')?;
        rest.starts_with(|c: char| c.is_ascii_digit())
            .then(|| major.parse().ok())
            .flatten()
    })
}

/// `doc` as TOML, with the file named in the error.
pub fn parse(text: &str, path: &Path) -> Result<DocumentMut> {
    text.parse::<DocumentMut>().map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version_of(text: &str) -> Result<Option<ConfigVersion>> {
        declared(&parse(text, Path::new("t.toml"))?, Path::new("t.toml"))
    }

    #[test]
    fn versions_are_read() {
        assert_eq!(
            version_of("version = 2\n").unwrap(),
            Some(ConfigVersion::V2)
        );
        assert_eq!(
            version_of("version = 3\n").unwrap(),
            Some(ConfigVersion::V3)
        );
        assert_eq!(version_of("# nothing\n").unwrap(), None);
        assert_eq!(version_of("").unwrap(), None);
    }

    #[test]
    fn unknown_versions_are_refused() {
        for text in [
            "version = 4\n",
            "version = \"2\"\n",
            "root = \"/x\"\n",
            "version = 1\n",
        ] {
            let err = version_of(text).unwrap_err();
            assert!(
                matches!(err, Error::UnsupportedVersion { .. }),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn containerd_versions_parse() {
        let debian = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3";
        assert_eq!(parse_major(debian), Some(1));
        let upstream = "containerd containerd.io v2.0.4 1a43cb6a1035441f9aca8f5666a9b3ef9e70ab20";
        assert_eq!(parse_major(upstream), Some(2));
        assert_eq!(
            parse_major("containerd github.com/containerd/containerd"),
            None
        );
    }
}
