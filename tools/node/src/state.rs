//! What an install changed, kept in the state directory (default `/var/lib/wasmpod-node`):
//! `state.json`, and under `originals/` a byte-exact copy of every file as it was before
//! wasmpod-node first touched it. Upgrades keep the first copies, so `uninstall` always returns
//! to the node as it was before the first install.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{self, Snapshot};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/wasmpod-node";
const STATE_FILE: &str = "state.json";
const ORIGINALS: &str = "originals";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The containerd config installed into (the main one, not the drop-in or template).
    pub config: PathBuf,
    /// How containerd is run: `containerd`, `k3s` or `rke2`.
    pub flavor: String,
    /// The handlers registered, as `NAME` or `NAME=ENGINE`.
    pub handlers: Vec<String>,
    pub files: Vec<FileRecord>,
    pub binaries: Vec<PathBuf>,
}

/// A config file wasmpod-node wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: PathBuf,
    /// The file name of its original under `originals/`; `None` when it did not exist.
    pub original: Option<String>,
    pub original_mode: Option<u32>,
    /// The digest of what wasmpod-node wrote, to tell whether someone changed it since.
    pub installed_sha256: String,
}

pub fn state_file(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

pub fn load(dir: &Path) -> Result<Option<State>> {
    let path = state_file(dir);
    let Some(snap) = fsutil::snapshot(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&snap.bytes)
        .map(Some)
        .map_err(|e| Error::State {
            path,
            message: e.to_string(),
        })
}

pub fn save(dir: &Path, state: &State) -> Result<()> {
    let text = serde_json::to_vec_pretty(state).map_err(|e| Error::State {
        path: state_file(dir),
        message: e.to_string(),
    })?;
    fsutil::write_atomic(&state_file(dir), &text, 0o600)
}

/// Where the original of `record` is kept.
pub fn original_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(ORIGINALS).join(name)
}

/// The original of `record` as it was, `None` when the file did not exist.
pub fn original(dir: &Path, record: &FileRecord) -> Result<Option<Snapshot>> {
    let Some(name) = &record.original else {
        return Ok(None);
    };
    let path = original_path(dir, name);
    let bytes = std::fs::read(&path).map_err(|e| Error::State {
        path: path.clone(),
        message: format!("the original of {} is gone: {e}", record.path.display()),
    })?;
    Ok(Some(Snapshot {
        bytes,
        mode: record.original_mode.unwrap_or(0o644),
    }))
}

/// Keeps `before` (the file at `path` before the first install) under `originals/` and returns
/// its record; the name says which file it was.
pub fn keep_original(
    dir: &Path,
    path: &Path,
    before: Option<&Snapshot>,
    installed: &[u8],
) -> Result<FileRecord> {
    let original = match before {
        None => None,
        Some(snap) => {
            let name = path
                .to_string_lossy()
                .trim_start_matches('/')
                .replace('/', "_");
            fsutil::write_atomic(&original_path(dir, &name), &snap.bytes, 0o600)?;
            Some(name)
        }
    };
    Ok(FileRecord {
        path: path.to_path_buf(),
        original,
        original_mode: before.map(|s| s.mode),
        installed_sha256: fsutil::sha256(installed),
    })
}

/// Removes the state file and the originals.
pub fn clear(dir: &Path, state: &State) -> Result<()> {
    for record in &state.files {
        if let Some(name) = &record.original {
            fsutil::remove(&original_path(dir, name))?;
        }
    }
    let _ = std::fs::remove_dir(dir.join(ORIGINALS));
    fsutil::remove(&state_file(dir))?;
    let _ = std::fs::remove_dir(dir);
    Ok(())
}
