//! The cache directory must be root's alone: whoever can write to it, or replace one of its
//! parents, could plant native code that every wasm container of the node then runs.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

const STICKY: u32 = 0o1000;
const GROUP_OR_OTHER_WRITE: u32 = 0o022;

/// Creates `dir` (and missing parents) root-only.
pub(super) fn create(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `dir` if needed, then checks it and every parent: owned by root, not writable by
/// group or others. A parent may be world-writable if it is root's and sticky (`/tmp`): others
/// can add entries there but not replace ours.
pub(super) fn ensure(dir: &Path) -> Result<(), String> {
    create(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let own = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !own.is_dir() {
        return Err(format!("{} is not a directory (a symlink?)", dir.display()));
    }
    check(dir, &own, false)?;
    for parent in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        check(parent, &meta, true)?;
    }
    Ok(())
}

fn check(path: &Path, meta: &std::fs::Metadata, is_parent: bool) -> Result<(), String> {
    if meta.uid() != 0 {
        return Err(format!(
            "{} is owned by uid {}, not root",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode();
    let sticky_parent = is_parent && mode & STICKY != 0;
    if mode & GROUP_OR_OTHER_WRITE != 0 && !sticky_parent {
        return Err(format!(
            "{} is writable by group or others (mode {:o})",
            path.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn root_only_directories_pass_and_others_are_named() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("cache/wasmtime");
        ensure(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure(&dir).unwrap_err();
        assert!(
            err.contains("writable by group or others (mode 777)"),
            "{err}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        let parent = base.path().join("cache");
        std::os::unix::fs::chown(&parent, Some(65534), None).unwrap();
        let err = ensure(&dir).unwrap_err();
        assert!(err.contains("owned by uid 65534, not root"), "{err}");
    }

    #[test]
    fn a_symlinked_cache_directory_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        create(&real).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = ensure(&link).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
    }
}
