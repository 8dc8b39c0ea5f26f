//! The containerd process serving a config, and whether it read the config's latest version.
//! containerd reads its config only at start, so a config changed after the process started
//! is not in effect until a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub pid: u32,
    pub started: SystemTime,
}

/// The running containerd whose config is `config` (`--config`/`-c`, or the default path).
pub fn find(config: &Path) -> Option<Running> {
    let wanted = canonical(config);
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        if comm.trim() != "containerd" {
            return None;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if canonical(&config_arg(&args)) != wanted {
            return None;
        }
        Some(Running {
            pid,
            started: started(pid)?,
        })
    })
}

/// Whether `process` started after every one of `files` was last modified.
pub fn has_loaded(process: &Running, files: &[PathBuf]) -> bool {
    files.iter().all(|file| {
        std::fs::metadata(file)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified <= process.started)
    })
}

/// The config a containerd command line names.
fn config_arg(args: &[String]) -> PathBuf {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--config" || arg == "-c" {
            if let Some(path) = iter.next() {
                return PathBuf::from(path);
            }
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return PathBuf::from(path);
        }
    }
    PathBuf::from(DEFAULT_CONFIG)
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// When `pid` started: field 22 of /proc/PID/stat (clock ticks after boot) plus the boot time.
fn started(pid: u32) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = after_name.split(' ').nth(19)?.parse().ok()?;
    let proc_stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    let since_boot = Duration::from_millis(ticks * 1000 / hz);
    Some(UNIX_EPOCH + Duration::from_secs(btime) + since_boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_arguments_are_found() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            config_arg(&args(&["containerd"])),
            Path::new(DEFAULT_CONFIG)
        );
        assert_eq!(
            config_arg(&args(&["containerd", "-c", "/x.toml"])),
            Path::new("/x.toml")
        );
        assert_eq!(
            config_arg(&args(&["containerd", "--config=/y"])),
            Path::new("/y")
        );
    }

    #[test]
    fn this_process_has_a_start_time_in_the_past() {
        let t = started(std::process::id()).unwrap();
        assert!(t <= SystemTime::now() + Duration::from_secs(1));
    }
}
