//! Size-bounded eviction of the module cache: least recently used (oldest mtime) first.
//!
//! Runs in whichever shim just wrote an entry, while other shims may be reading, touching,
//! writing or evicting in the same directory. Nothing here fails the container: errors are
//! logged, and a file that is already gone counts as removed. Unlinking an artifact that a
//! running container has mmapped is safe on Linux. What is not safe is unlinking one that a
//! create has just been handed but its zygote worker has not opened yet, so entries used
//! within [`IN_USE_GRACE`] are kept even when that leaves the cache over its limit for a while.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, SystemTime};

pub(super) const TMP_PREFIX: &str = ".tmp-";
/// A temp file this old was left by a writer that crashed; writing one takes milliseconds.
pub const STALE_TMP_AGE: Duration = Duration::from_secs(10 * 60);
/// Entries used (hit or written) this recently are never evicted: the artifact path has just
/// been handed to a create whose zygote worker opens it by path moments later.
pub const IN_USE_GRACE: Duration = Duration::from_secs(60);

struct Entry {
    name: OsString,
    len: u64,
    mtime: SystemTime,
}

/// Removes stale temp files, then, if the `*.bin` entries exceed `max_bytes`, evicts the least
/// recently used ones until they fit. Never evicts `keep` (the entry just written) nor entries
/// used within [`IN_USE_GRACE`].
pub(super) fn evict(dir: &Path, max_bytes: u64, keep: &Path) {
    let now = SystemTime::now();
    let mut entries = scan(dir, now);
    let mut total: u64 = entries.iter().map(|e| e.len).sum();
    if total <= max_bytes {
        return;
    }
    let keep = keep.file_name();
    entries.retain(|e| Some(e.name.as_os_str()) != keep && age(now, e.mtime) >= IN_USE_GRACE);
    // Oldest first; the name breaks ties so that concurrent evictors agree on the order.
    entries.sort_by(|a, b| (a.mtime, &a.name).cmp(&(b.mtime, &b.name)));
    for entry in entries {
        if total <= max_bytes {
            return;
        }
        let path = dir.join(&entry.name);
        match fs::remove_file(&path) {
            Ok(()) => tracing::info!(
                entry = %entry.name.to_string_lossy(),
                freed_bytes = entry.len,
                "evicted least recently used module from the cache"
            ),
            // Another shim evicted it first: it no longer counts either way.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(entry = %path.display(), error = %e, "cannot evict cache entry");
                continue;
            }
        }
        total = total.saturating_sub(entry.len);
    }
    if total > max_bytes {
        tracing::info!(
            dir = %dir.display(),
            total_bytes = total,
            max_bytes,
            "module cache over its limit: the remaining entries were used in the last {}s",
            IN_USE_GRACE.as_secs()
        );
    }
}

/// Lists the `*.bin` entries, removing stale temp files on the way.
fn scan(dir: &Path, now: SystemTime) -> Vec<Entry> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list module cache for eviction");
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for item in listing {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list module cache for eviction");
                break;
            }
        };
        let name = item.file_name();
        let is_tmp = name.to_string_lossy().starts_with(TMP_PREFIX);
        if !is_tmp && !name.to_string_lossy().ends_with(".bin") {
            continue;
        }
        // Not following symlinks; a file removed since the listing is simply skipped.
        let Ok(meta) = item.metadata() else { continue };
        let mtime = meta.modified().unwrap_or(now);
        if !meta.is_file() {
            continue;
        }
        if is_tmp {
            if age(now, mtime) >= STALE_TMP_AGE {
                remove_stale_tmp(&dir.join(&name), meta.len());
            }
            continue;
        }
        entries.push(Entry {
            name,
            len: meta.len(),
            mtime,
        });
    }
    entries
}

fn remove_stale_tmp(path: &Path, len: u64) {
    match fs::remove_file(path) {
        Ok(()) => tracing::info!(
            file = %path.display(),
            freed_bytes = len,
            "removed temp file left in the module cache by an interrupted write"
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove stale temp file")
        }
    }
}

/// How long ago `mtime` was; zero when it is in the future (clock changes).
fn age(now: SystemTime, mtime: SystemTime) -> Duration {
    now.duration_since(mtime).unwrap_or(Duration::ZERO)
}
