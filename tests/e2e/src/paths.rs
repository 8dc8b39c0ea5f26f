//! Where things are: the workspace, the shim directory, and host binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The workspace root (`tests/e2e/../..`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// `<workspace>/tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests").join("fixtures")
}

/// The directory holding the shim binary: `$WASMPOD_SHIM_DIR`, else
/// `$CARGO_TARGET_DIR/debug`, else `<workspace>/target/debug`.
pub fn shim_dir() -> PathBuf {
    if let Some(dir) = non_empty_env("WASMPOD_SHIM_DIR") {
        return PathBuf::from(dir);
    }
    let target = match non_empty_env("CARGO_TARGET_DIR") {
        Some(dir) => absolute(Path::new(&dir)),
        None => workspace_root().join("target"),
    };
    target.join("debug")
}

/// The shim binary `binary` inside `dir`, or an error saying how to build it.
pub fn require_shim_in(dir: &Path, binary: &str) -> Result<PathBuf> {
    let path = dir.join(binary);
    if !is_executable(&path) {
        bail!(
            "shim binary not found at {}: run `make build-debug` (or `cargo build --workspace --bins` \
             with the same CARGO_TARGET_DIR), or point WASMPOD_SHIM_DIR at its directory",
            path.display()
        );
    }
    Ok(path)
}

/// Finds `name` on `PATH`, or fails with `hint` (what to install).
pub fn require_binary(name: &str, hint: &str) -> Result<PathBuf> {
    match find_in_path(name) {
        Some(path) => Ok(path),
        None => bail!("{name} not found on PATH: {hint}"),
    }
}

/// The first executable called `name` in the directories of `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// True for a regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A relative `CARGO_TARGET_DIR` is taken relative to the workspace root (cargo resolves it
/// against the directory it was started in, which is usually the root).
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        workspace_root().join(path)
    }
}
