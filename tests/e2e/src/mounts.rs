//! Reading `/proc/self/mountinfo` and unmounting everything below a directory.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Where it is mounted (escapes such as `\040` decoded).
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// The raw line, for messages.
    pub line: String,
}

/// All current mounts of this process's mount namespace, in mount order.
pub fn mounts() -> Result<Vec<MountInfo>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// Parses one mountinfo line: `id parent maj:min root mount-point opts [tags] - type source super`.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    Some(MountInfo {
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: right.next()?.to_string(),
        source: unescape(right.next().unwrap_or("")),
        line: line.to_string(),
    })
}

/// Decodes the octal escapes the kernel uses for space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir`, deepest (and most recently mounted) first.
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<(usize, usize, PathBuf)> = mounts()?
        .into_iter()
        .enumerate()
        .filter(|(_, m)| m.mount_point.starts_with(dir))
        .map(|(order, m)| (m.mount_point.components().count(), order, m.mount_point))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse((m.0, m.1)));
    Ok(found.into_iter().map(|(_, _, p)| p).collect())
}

/// Unmounts everything at or below `dir`; falls back to a lazy unmount when one is busy.
pub fn unmount_all_under(dir: &Path) -> Result<()> {
    for _round in 0..5 {
        let targets = mounts_under(dir)?;
        if targets.is_empty() {
            return Ok(());
        }
        for target in targets {
            if umount(&target, 0).is_err() {
                let _ = umount(&target, libc::MNT_DETACH);
            }
        }
    }
    let left = mounts_under(dir)?;
    if !left.is_empty() {
        bail!("still mounted under {}: {left:?}", dir.display());
    }
    Ok(())
}

fn umount(target: &Path, flags: libc::c_int) -> std::io::Result<()> {
    let c_path = CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(c_path.as_ptr(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escaped_mount_points() {
        let line =
            "36 35 98:0 /mnt1 /a\\040b rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        let m = parse_line(line).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/a b"));
        assert_eq!(m.fs_type, "ext3");
        assert_eq!(m.source, "/dev/root");
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_line("not a mountinfo line"), None);
    }
}
