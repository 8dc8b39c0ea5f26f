//! `wasmpod-node uninstall`: every config file back as it was before the first install, byte
//! for byte, the shims removed, the state directory emptied.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::restart;
use crate::state;
use crate::target::Flavor;

#[derive(Debug, Clone)]
pub struct UninstallOptions {
    pub state_dir: PathBuf,
    /// Restore files even when they changed since the install.
    pub force: bool,
    pub restart: bool,
}

#[derive(Debug, Clone)]
pub struct UninstallReport {
    pub restored: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    pub restarted: Option<String>,
}

pub fn uninstall(options: &UninstallOptions) -> Result<UninstallReport> {
    let dir = &options.state_dir;
    let state = state::load(dir)?.ok_or_else(|| Error::NotInstalled {
        path: state::state_file(dir),
    })?;
    // Everything is checked before anything is changed.
    let mut originals = Vec::new();
    for record in &state.files {
        let original = state::original(dir, record)?;
        let current = fsutil::snapshot(&record.path)?;
        let untouched = current
            .as_ref()
            .is_some_and(|c| fsutil::sha256(&c.bytes) == record.installed_sha256);
        if !untouched && !options.force {
            return Err(Error::ChangedSinceInstall {
                path: record.path.clone(),
                backup: record
                    .original
                    .as_ref()
                    .map(|name| state::original_path(dir, name))
                    .unwrap_or_else(|| PathBuf::from("(none: the file did not exist)")),
            });
        }
        if let Some(parent) = record.path.parent() {
            fsutil::check_writable(parent)?;
        }
        originals.push((record.path.clone(), original));
    }
    for binary in &state.binaries {
        fsutil::check_writable(binary.parent().unwrap_or(Path::new("/")))?;
    }
    for (path, original) in &originals {
        fsutil::restore(path, original.as_ref())?;
    }
    for binary in &state.binaries {
        fsutil::remove(binary)?;
    }
    state::clear(dir, &state)?;
    let restarted = if options.restart {
        let flavor = Flavor::parse(&state.flavor).unwrap_or(Flavor::Containerd);
        Some(restart::restart(flavor)?)
    } else {
        None
    };
    Ok(UninstallReport {
        restored: originals.into_iter().map(|(p, _)| p).collect(),
        removed: state.binaries,
        restarted,
    })
}
