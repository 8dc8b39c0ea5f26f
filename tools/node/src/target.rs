//! Which containerd config to install into, and how containerd is run on this node.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::running::DEFAULT_CONFIG;
use crate::template;

const K3S_CONFIG: &str = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";
const RKE2_CONFIG: &str = "/var/lib/rancher/rke2/agent/etc/containerd/config.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// containerd run by itself (systemd unit or init script `containerd`).
    Containerd,
    /// containerd run by k3s, config rendered from a template.
    K3s,
    /// containerd run by RKE2, config rendered from a template.
    Rke2,
}

impl Flavor {
    fn of(path: &Path) -> Flavor {
        let text = path.to_string_lossy();
        if text.contains("/rancher/k3s/") {
            Flavor::K3s
        } else if text.contains("/rancher/rke2/") {
            Flavor::Rke2
        } else {
            Flavor::Containerd
        }
    }

    pub fn parse(text: &str) -> Option<Flavor> {
        match text {
            "containerd" => Some(Flavor::Containerd),
            "k3s" => Some(Flavor::K3s),
            "rke2" => Some(Flavor::Rke2),
            _ => None,
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Containerd => "containerd",
            Flavor::K3s => "k3s",
            Flavor::Rke2 => "rke2",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The config containerd reads (for k3s/RKE2, the rendered one).
    pub config: PathBuf,
    /// For k3s/RKE2: the template wasmpod-node edits instead.
    pub template: Option<PathBuf>,
    pub flavor: Flavor,
}

impl Target {
    /// The config at `config`, or the first of RKE2's, k3s's and containerd's default configs
    /// whose directory exists.
    pub fn detect(config: Option<&Path>) -> Result<Target> {
        let config = match config {
            Some(path) => fsutil::absolute(path),
            None => {
                let candidates = [RKE2_CONFIG, K3S_CONFIG, DEFAULT_CONFIG];
                candidates
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.parent().is_some_and(Path::is_dir))
                    .ok_or_else(|| Error::NoConfig {
                        looked: candidates.join(", "),
                    })?
            }
        };
        // Renaming over a symlink would replace the link: edit what it points to.
        let config = config.canonicalize().unwrap_or(config);
        let flavor = Flavor::of(&config);
        let dir = config.parent().unwrap_or(Path::new("/")).to_path_buf();
        if template::is_template(&config) {
            return Ok(Target {
                config: dir.join("config.toml"),
                template: Some(config),
                flavor,
            });
        }
        let has_template = [template::V2_NAME, template::V3_NAME]
            .iter()
            .any(|name| dir.join(name).exists());
        let template =
            (flavor != Flavor::Containerd || has_template).then(|| template::path_in(&dir));
        Ok(Target {
            config,
            template,
            flavor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3s_configs_are_edited_through_their_template() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "version = 2\n").unwrap();
        let plain = Target::detect(Some(&config)).unwrap();
        assert_eq!(plain.template, None);
        assert_eq!(plain.flavor, Flavor::Containerd);

        std::fs::write(dir.path().join(template::V2_NAME), "").unwrap();
        let templated = Target::detect(Some(&config)).unwrap();
        assert_eq!(templated.template, Some(dir.path().join(template::V2_NAME)));

        let direct = Target::detect(Some(&dir.path().join(template::V3_NAME))).unwrap();
        assert_eq!(direct.template, Some(dir.path().join(template::V3_NAME)));
        assert_eq!(direct.config, dir.path().join("config.toml"));
    }

    #[test]
    fn a_rendered_v3_config_gets_a_v3_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "version = 3\n").unwrap();
        assert_eq!(
            template::path_in(dir.path()),
            dir.path().join(template::V3_NAME)
        );
    }
}
