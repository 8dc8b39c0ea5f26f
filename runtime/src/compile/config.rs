//! The node's compile limits, from the shim's environment (containerd passes its own on).

use std::time::Duration;

pub const MEMORY_ENV: &str = "WASMPOD_COMPILE_MEMORY";
pub const JOBS_ENV: &str = "WASMPOD_COMPILE_JOBS";
pub const TIMEOUT_ENV: &str = "WASMPOD_COMPILE_TIMEOUT";
/// Name of the compile cgroup (under each controller's root); one per node by default.
pub const CGROUP_ENV: &str = "WASMPOD_COMPILE_CGROUP";

pub const DEFAULT_MEMORY: u64 = 2 << 30;
pub const DEFAULT_JOBS: usize = 1;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_CGROUP: &str = "wasmpod-compile";

/// The node's compile limits (README, "Tenant isolation").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileConfig {
    /// Memory limit of the compile cgroup, shared by every compile on the node.
    pub memory: u64,
    /// Compiles running at once on the node; the rest wait.
    pub jobs: usize,
    /// Wall-clock limit of one compile.
    pub timeout: Duration,
    /// Name of the compile cgroup (`WASMPOD_COMPILE_CGROUP`).
    pub cgroup: String,
}

impl Default for CompileConfig {
    fn default() -> Self {
        Self {
            memory: DEFAULT_MEMORY,
            jobs: DEFAULT_JOBS,
            timeout: DEFAULT_TIMEOUT,
            cgroup: DEFAULT_CGROUP.to_string(),
        }
    }
}

impl CompileConfig {
    /// Reads the limits; a malformed value is logged and its default used.
    pub fn from_env() -> Self {
        let defaults = Self::default();
        Self {
            memory: from_env(MEMORY_ENV, parse_bytes).unwrap_or(defaults.memory),
            jobs: from_env(JOBS_ENV, |v| v.parse().ok().filter(|n| *n > 0))
                .unwrap_or(defaults.jobs),
            timeout: from_env(TIMEOUT_ENV, parse_duration).unwrap_or(defaults.timeout),
            cgroup: from_env(CGROUP_ENV, parse_cgroup_name).unwrap_or(defaults.cgroup),
        }
    }
}

fn from_env<T>(name: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
    let raw = std::env::var(name).ok()?;
    let value = parse(raw.trim());
    if value.is_none() {
        tracing::warn!(variable = name, value = %raw, "malformed value, using the default");
    }
    value
}

/// `2147483648`, `512K`, `64M`, `2G` (also `Ki`/`KiB`/`MiB`/`GiB` forms): powers of 1024.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KI" | "KIB" => 10,
        "M" | "MI" | "MIB" => 20,
        "G" | "GI" | "GIB" => 30,
        _ => return None,
    };
    number.checked_mul(1 << shift).filter(|n| *n > 0)
}

/// `120`, `120s`, `500ms`, `2m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let duration = if let Some(ms) = text.strip_suffix("ms") {
        Duration::from_millis(ms.parse().ok()?)
    } else if let Some(m) = text.strip_suffix('m') {
        Duration::from_secs(m.parse::<u64>().ok()?.checked_mul(60)?)
    } else {
        Duration::from_secs(text.strip_suffix('s').unwrap_or(text).parse().ok()?)
    };
    (!duration.is_zero()).then_some(duration)
}

/// One path component of plain characters: it is joined under each cgroup root.
fn parse_cgroup_name(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text != "."
        && text != ".."
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then(|| text.to_string())
}

/// `2 GiB`, `16 MiB`, `1536 KiB`, `100 bytes`: for messages.
pub fn human_bytes(bytes: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64);
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_names_parse_or_are_refused() {
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("12x"), None);
        assert_eq!(parse_bytes("0"), None);
        assert_eq!(parse_bytes("99999999999G"), None);
        assert_eq!(parse_duration("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("120s"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(
            parse_cgroup_name("wasmpod-compile").as_deref(),
            Some("wasmpod-compile")
        );
        assert_eq!(parse_cgroup_name("../kubepods"), None);
        assert_eq!(parse_cgroup_name("a/b"), None);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(2 << 30), "2 GiB");
        assert_eq!(human_bytes(16 << 20), "16 MiB");
        assert_eq!(human_bytes(1536 << 10), "1536 KiB");
        assert_eq!(human_bytes(100), "100 bytes");
    }
}
