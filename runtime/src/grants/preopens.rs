//! `wasmpod.io/preopens`: the directories a guest sees instead of `/`.

use std::path::{Path, PathBuf};

use super::{entries, GrantError, PREOPENS};

/// Kernel filesystems never preopened: the guest must not reach them.
pub(super) const KERNEL_PATHS: &[&str] = &["/proc", "/sys", "/dev"];

/// A directory an engine preopens for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDir {
    /// The directory in the container (the engine's process is in it).
    pub path: PathBuf,
    /// The name the guest sees it under: the same path, or `.` for the working directory.
    pub guest_path: String,
    /// Whether the guest may change what is in it.
    pub writable: bool,
}

/// What an engine preopens: `/` read-write and the working directory as `.` by default; with
/// `wasmpod.io/preopens`, those directories, and `.` when the working directory is in one.
pub fn guest_dirs(preopens: Option<&[Preopen]>, cwd: &Path) -> Vec<GuestDir> {
    let default = [Preopen {
        path: PathBuf::from("/"),
        writable: true,
    }];
    let preopens = preopens.unwrap_or(&default);
    let mut dirs: Vec<GuestDir> = preopens
        .iter()
        .map(|p| GuestDir {
            path: p.path.clone(),
            guest_path: p.path.to_string_lossy().into_owned(),
            writable: p.writable,
        })
        .collect();
    let holder = preopens
        .iter()
        .filter(|p| cwd.starts_with(&p.path))
        .max_by_key(|p| p.path.components().count());
    if let Some(holder) = holder {
        if cwd != Path::new("/") {
            dirs.push(GuestDir {
                path: cwd.to_path_buf(),
                guest_path: ".".to_string(),
                writable: holder.writable,
            });
        }
    }
    dirs
}

/// One directory the guest sees, at the same path as in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// An absolute, normal path of the container (no `.`, `..` or repeated `/`).
    pub path: PathBuf,
    /// `:rw`; `:ro` preopens are mounted read-only, so writes fail with `EROFS`.
    pub writable: bool,
}

pub(super) fn parse(value: &str) -> Result<Vec<Preopen>, GrantError> {
    let mut preopens: Vec<Preopen> = Vec::new();
    for entry in entries(PREOPENS, value)? {
        let bad =
            |reason: String| GrantError::malformed(PREOPENS, value, format!("{entry}: {reason}"));
        let (path, mode) = entry
            .rsplit_once(':')
            .ok_or_else(|| bad("no :ro or :rw".into()))?;
        let writable = match mode {
            "ro" => false,
            "rw" => true,
            other => return Err(bad(format!("mode {other:?} is not ro or rw"))),
        };
        let path = normal_path(path).map_err(&bad)?;
        if KERNEL_PATHS.iter().any(|k| path.starts_with(k)) {
            return Err(bad("/proc, /sys and /dev are never given to a guest".into()));
        }
        if preopens.iter().any(|p| p.path == path) {
            return Err(bad("listed twice".into()));
        }
        preopens.push(Preopen { path, writable });
    }
    Ok(preopens)
}

/// `path` if it is absolute and has only normal components.
fn normal_path(path: &str) -> Result<PathBuf, String> {
    if !path.starts_with('/') {
        return Err("not an absolute path".into());
    }
    if path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
        return Err("not a normal path (repeated or trailing /)".into());
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        return Err("not a normal path (. or ..)".into());
    }
    let path = Path::new(path);
    if path.as_os_str().len() > 4096 {
        return Err("longer than PATH_MAX".into());
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let preopens = parse("/data:ro, /tmp:rw,/:ro").unwrap();
        assert_eq!(
            preopens,
            vec![
                Preopen {
                    path: "/data".into(),
                    writable: false
                },
                Preopen {
                    path: "/tmp".into(),
                    writable: true
                },
                Preopen {
                    path: "/".into(),
                    writable: false
                },
            ]
        );
    }

    #[test]
    fn dirs() {
        let names = |dirs: Vec<GuestDir>| {
            dirs.into_iter()
                .map(|d| format!("{}={}:{}", d.guest_path, d.path.display(), d.writable))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(guest_dirs(None, Path::new("/"))), ["/=/:true"]);
        assert_eq!(
            names(guest_dirs(None, Path::new("/app"))),
            ["/=/:true", ".=/app:true"]
        );
        let preopens = parse("/data:ro,/data/w:rw").unwrap();
        assert_eq!(
            names(guest_dirs(Some(&preopens), Path::new("/data/w/x"))),
            [
                "/data=/data:false",
                "/data/w=/data/w:true",
                ".=/data/w/x:true"
            ]
        );
        assert_eq!(
            names(guest_dirs(Some(&preopens), Path::new("/app"))),
            ["/data=/data:false", "/data/w=/data/w:true"]
        );
    }

    #[test]
    fn malformed() {
        for value in [
            "",
            "/data",
            "/data:rx",
            "data:ro",
            "/data/../etc:ro",
            "/data/./x:ro",
            "/data//x:ro",
            "/data/:ro",
            "/proc:ro",
            "/dev/shm:rw",
            "/sys/fs:ro",
            "/a:ro,/a:rw",
        ] {
            let err = parse(value).unwrap_err().to_string();
            assert!(
                err.starts_with("annotation wasmpod.io/preopens="),
                "{value}: {err}"
            );
            assert!(
                err.contains("allowed: a comma-separated list"),
                "{value}: {err}"
            );
        }
    }
}
