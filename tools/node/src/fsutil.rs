//! File writes that either happen whole or not at all, and what was there before them.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A file's bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// The file at `path`, or `None` when there is none.
pub fn snapshot(path: &Path) -> Result<Option<Snapshot>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let meta = std::fs::metadata(path).map_err(Error::io(path))?;
            Ok(Some(Snapshot {
                bytes,
                mode: meta.permissions().mode() & 0o7777,
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path)(e)),
    }
}

/// Writes `bytes` to a new file beside `path` and renames it over `path`, so readers see the
/// old file or the new one. A bind-mounted file cannot be renamed over: it is rewritten in place.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(|e| writable_error(dir, e))?;
    let temp = temp_beside(path);
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(writable_error(path, e));
    }
    match std::fs::rename(&temp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let _ = std::fs::remove_file(&temp);
            std::fs::write(path, bytes).map_err(|e| writable_error(path, e))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(writable_error(path, e))
        }
    }
}

/// Puts `before` back at `path`, or removes `path` when there was nothing.
pub fn restore(path: &Path, before: Option<&Snapshot>) -> Result<()> {
    match before {
        Some(snap) => write_atomic(path, &snap.bytes, snap.mode),
        None => remove(path),
    }
}

pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(writable_error(path, e)),
    }
}

/// Fails unless a file can be created in `dir` (or, when `dir` does not exist yet, in its
/// nearest existing ancestor). Root ignores permission bits, so this tries for real: it is
/// what finds a read-only mount.
pub fn check_writable(dir: &Path) -> Result<()> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(up) => existing = up,
            None => break,
        }
    }
    let probe = existing.join(format!(".wasmpod-node-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(writable_error(existing, e)),
    }
}

/// A failed write, as [`Error::ReadOnly`] when that is why.
fn writable_error(path: &Path, e: std::io::Error) -> Error {
    let read_only = matches!(
        e.raw_os_error(),
        Some(libc::EROFS | libc::EACCES | libc::EPERM)
    );
    if read_only {
        Error::ReadOnly {
            path: path.to_path_buf(),
            source: e,
        }
    } else {
        Error::io(path)(e)
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    parent(path).join(format!(".{name}.wasmpod-node-{}", std::process::id()))
}

/// `path` made absolute against the working directory (it ends up in configs and state).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|dir| dir.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_and_restore_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = snapshot(&path).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        restore(&path, before.as_ref()).unwrap();
        assert_eq!(snapshot(&path).unwrap(), before);
        restore(&path, None).unwrap();
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no temp files left"
        );
    }
}
