//! Where a proxy component is served, from the container's env. The variable names are those
//! of containerd's runwasi wasmtime shim, so its pod specs work unchanged; like runwasi, wasmpod
//! consumes them: the guest does not see them. Unlike runwasi, a malformed value is an error
//! rather than silently replaced by the default.

use std::net::{Ipv4Addr, SocketAddr};

use wasmpod_runtime::EngineError;

/// The address to listen on, `IP:PORT`.
pub const ADDR_ENV: &str = "WASMTIME_HTTP_PROXY_SOCKET_ADDR";
/// The listen backlog: connections the kernel queues before they are accepted.
pub const BACKLOG_ENV: &str = "WASMTIME_HTTP_PROXY_BACKLOG";
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
const DEFAULT_BACKLOG: u32 = 100;

#[derive(Debug, PartialEq, Eq)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub backlog: u32,
    /// The container's env without the variables above.
    pub guest_env: Vec<String>,
}

impl ServeConfig {
    /// Reads `KEY=VALUE` pairs; when a key repeats, the last value wins (as in a process env).
    pub fn from_env(env: &[String]) -> Result<Self, EngineError> {
        let mut addr = DEFAULT_ADDR;
        let mut backlog = DEFAULT_BACKLOG;
        let mut guest_env = Vec::with_capacity(env.len());
        for pair in env {
            let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
            match key {
                ADDR_ENV => {
                    addr = value.trim().parse().map_err(|e| {
                        invalid(
                            key,
                            value,
                            &format!("{e}; expected IP:PORT, e.g. {DEFAULT_ADDR}"),
                        )
                    })?;
                }
                BACKLOG_ENV => {
                    backlog = value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|b| (1..=i32::MAX as u32).contains(b))
                        .ok_or_else(|| invalid(key, value, "expected a positive integer"))?;
                }
                _ => guest_env.push(pair.clone()),
            }
        }
        Ok(Self {
            addr,
            backlog,
            guest_env,
        })
    }
}

fn invalid(key: &str, value: &str, why: &str) -> EngineError {
    EngineError::Other(format!("invalid {key}={value:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[&str]) -> Vec<String> {
        pairs.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let config = ServeConfig::from_env(&env(&["A=1", "PATH=/bin"])).unwrap();
        assert_eq!(config.addr, DEFAULT_ADDR);
        assert_eq!(config.addr.to_string(), "0.0.0.0:8080");
        assert_eq!(config.backlog, DEFAULT_BACKLOG);
        assert_eq!(config.guest_env, env(&["A=1", "PATH=/bin"]));

        let config = ServeConfig::from_env(&env(&[
            "WASMTIME_HTTP_PROXY_SOCKET_ADDR=127.0.0.1:1",
            "A=1",
            "WASMTIME_HTTP_PROXY_SOCKET_ADDR=[::1]:9000",
            "WASMTIME_HTTP_PROXY_BACKLOG=7",
        ]))
        .unwrap();
        assert_eq!(config.addr.to_string(), "[::1]:9000");
        assert_eq!(config.backlog, 7);
        assert_eq!(config.guest_env, env(&["A=1"]));
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            "WASMTIME_HTTP_PROXY_SOCKET_ADDR=8080",
            "WASMTIME_HTTP_PROXY_SOCKET_ADDR=localhost:8080",
            "WASMTIME_HTTP_PROXY_SOCKET_ADDR=0.0.0.0:99999",
            "WASMTIME_HTTP_PROXY_SOCKET_ADDR=",
            "WASMTIME_HTTP_PROXY_BACKLOG=0",
            "WASMTIME_HTTP_PROXY_BACKLOG=many",
        ] {
            let err = ServeConfig::from_env(&env(&[bad])).unwrap_err().to_string();
            let key = bad.split('=').next().unwrap();
            assert!(err.starts_with(&format!("invalid {key}=")), "{bad}: {err}");
        }
    }
}
