//! What a wasm guest may use beyond its own memory, granted per pod by annotations
//! (`wasmpod.io/network`, `wasmpod.io/outbound-http`, `wasmpod.io/preopens`, `wasmpod.io/env`).
//!
//! With no annotation a guest is as capable as a native process of its pod: the pod's network
//! (sockets, name lookup, outgoing HTTP), `/` of the container, and the spec's environment.
//! Each annotation only narrows that. CRI passes pod and container annotations to the
//! container's spec (the container's win), so both arrive here as the spec's annotations.
//!
//! [`Grants::from_spec`] parses them in `Create`: a malformed value or an unknown `wasmpod.io/`
//! key is an error naming the annotation, its value and what is allowed, so a typo never grants
//! anything. Engines enforce the parsed grants when they build the guest's WASI context; an
//! engine that cannot enforce one refuses it at `Create` (see [`crate::WasmEngine`]).

mod network;
mod outbound_http;
mod ports;
mod preopens;

use oci_spec::runtime::Spec;

pub use network::{Endpoint, HostMatch, Network, NetworkAllowList, SocketUse};
pub use outbound_http::{OutboundHttp, UrlPattern};
pub use ports::PortRange;
pub use preopens::{guest_dirs, GuestDir, Preopen};

mod read_only;
pub use read_only::apply_read_only;

/// The annotation prefix wasmpod owns: every key under it must be one of [`KNOWN`].
pub const PREFIX: &str = "wasmpod.io/";
/// `none`, or an allow-list of addresses the guest may connect to and ports it may listen on.
pub const NETWORK: &str = "wasmpod.io/network";
/// `none`, or an allow-list of `scheme://host[:port]` patterns for `wasi:http` requests.
pub const OUTBOUND_HTTP: &str = "wasmpod.io/outbound-http";
/// Directories of the container the guest sees instead of `/`, each `:ro` or `:rw`.
pub const PREOPENS: &str = "wasmpod.io/preopens";
/// `spec` (the container's environment, the default) or `none`.
pub const ENV: &str = "wasmpod.io/env";
/// Every annotation key wasmpod reads under [`PREFIX`].
pub const KNOWN: &[&str] = &[NETWORK, OUTBOUND_HTTP, PREOPENS, ENV];

/// Most entries in one annotation: checks stay cheap and an error message short.
pub(crate) const MAX_ENTRIES: usize = 64;

/// A `wasmpod.io/` annotation that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A key under `wasmpod.io/` that wasmpod does not know (a typo would grant nothing).
    #[error("unknown annotation {key}: wasmpod knows {}", KNOWN.join(", "))]
    UnknownKey {
        /// The annotation's key.
        key: String,
    },
    /// A value that does not parse.
    #[error("annotation {key}={value:?}: {reason}; allowed: {allowed}")]
    Malformed {
        /// The annotation's key.
        key: &'static str,
        /// Its value, cut to 200 characters.
        value: String,
        /// What is wrong with it.
        reason: String,
        /// What the annotation accepts.
        allowed: &'static str,
    },
    /// A well-formed grant the container cannot have (e.g. the engine cannot enforce it, or a
    /// preopen that does not exist).
    #[error("annotation {key}: {reason}")]
    Refused {
        /// The annotation's key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

impl GrantError {
    fn malformed(key: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            key,
            value: value.chars().take(200).collect(),
            reason: reason.into(),
            allowed: allowed(key),
        }
    }
}

/// The accepted forms of `key`, for error messages and the README.
pub fn allowed(key: &str) -> &'static str {
    match key {
        NETWORK => {
            "`none`, or a comma-separated list of CIDR[:PORTS], IP[:PORTS], [IPv6][:PORTS], \
             HOST:PORTS or *:PORTS to connect to, and listen=PORTS to bind; PORTS is a port, \
             a range a-b, * or several joined with ';'"
        }
        OUTBOUND_HTTP => {
            "`none`, or a comma-separated list of scheme://host[:port] with scheme http, https \
             or *, host a name, *.domain, an IP or *, and port a number or *"
        }
        PREOPENS => {
            "a comma-separated list of absolute container paths, each ending in :ro or :rw \
             (e.g. /data:ro,/tmp:rw)"
        }
        ENV => "`spec` or `none`",
        _ => "",
    }
}

/// Whether the guest gets the spec's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnvGrant {
    /// `process.env` of the spec (the default).
    #[default]
    Spec,
    /// No variables at all.
    None,
}

/// Everything a guest is granted, parsed from the spec's annotations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    /// `wasi:sockets` and name lookup.
    pub network: Network,
    /// `wasi:http/outgoing-handler`.
    pub outbound_http: OutboundHttp,
    /// The directories the guest sees; `None`: `/` of the container, read-write.
    pub preopens: Option<Vec<Preopen>>,
    /// The guest's environment.
    pub env: EnvGrant,
}

impl Grants {
    /// Parses the spec's `wasmpod.io/` annotations.
    pub fn from_spec(spec: &Spec) -> Result<Self, GrantError> {
        match spec.annotations() {
            Some(annotations) => Self::from_annotations(
                annotations
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str())),
            ),
            None => Ok(Self::default()),
        }
    }

    /// Parses `(key, value)` pairs; keys outside `wasmpod.io/` are ignored.
    pub fn from_annotations<'a>(
        annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, GrantError> {
        let mut grants = Self::default();
        let mut network_set = false;
        let mut http_set = false;
        let mut pairs: Vec<(&str, &str)> = annotations
            .into_iter()
            .filter(|(key, _)| key.starts_with(PREFIX))
            .collect();
        // One error for one spec, whatever the map's order.
        pairs.sort_unstable();
        for (key, value) in pairs {
            match key {
                NETWORK => {
                    grants.network = Network::parse(value)?;
                    network_set = true;
                }
                OUTBOUND_HTTP => {
                    grants.outbound_http = OutboundHttp::parse(value)?;
                    http_set = true;
                }
                PREOPENS => grants.preopens = Some(preopens::parse(value)?),
                ENV => {
                    grants.env = match value.trim() {
                        "spec" => EnvGrant::Spec,
                        "none" => EnvGrant::None,
                        _ => return Err(GrantError::malformed(ENV, value, "unknown value")),
                    }
                }
                _ => {
                    return Err(GrantError::UnknownKey {
                        key: key.chars().take(200).collect(),
                    })
                }
            }
        }
        // "No network" means no HTTP requests either, unless they are granted explicitly.
        if network_set && !http_set && grants.network == Network::None {
            grants.outbound_http = OutboundHttp::None;
        }
        Ok(grants)
    }

    /// Refuses what `engine` cannot enforce: allow-lists need [`crate::WasmEngine::SOCKETS`]
    /// and [`crate::WasmEngine::OUTBOUND_HTTP`]; `none` is always possible.
    pub fn check_engine(
        &self,
        engine: &str,
        sockets: bool,
        outbound_http: bool,
    ) -> Result<(), GrantError> {
        if !sockets && matches!(self.network, Network::Only(_)) {
            return Err(GrantError::Refused {
                key: NETWORK,
                reason: format!(
                    "the {engine} engine gives guests no sockets, so it cannot grant some \
                     addresses: use `none` or run the container on wasmtime"
                ),
            });
        }
        if !outbound_http && matches!(self.outbound_http, OutboundHttp::Only(_)) {
            return Err(GrantError::Refused {
                key: OUTBOUND_HTTP,
                reason: format!(
                    "the {engine} engine has no wasi:http client, so it cannot grant some \
                     hosts: use `none` or run the container on wasmtime"
                ),
            });
        }
        Ok(())
    }

    /// True when nothing is narrowed.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Splits a comma-separated annotation value into trimmed, non-empty entries, at most
/// [`MAX_ENTRIES`].
pub(crate) fn entries<'a>(key: &'static str, value: &'a str) -> Result<Vec<&'a str>, GrantError> {
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(GrantError::malformed(key, value, "empty"));
    }
    if entries.len() > MAX_ENTRIES {
        return Err(GrantError::malformed(
            key,
            value,
            format!("{} entries, at most {MAX_ENTRIES}", entries.len()),
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Grants, GrantError> {
        Grants::from_annotations(pairs.iter().copied())
    }

    #[test]
    fn no_annotation_grants_everything() {
        let grants = parse(&[("io.kubernetes.cri.sandbox-id", "x")]).unwrap();
        assert!(grants.is_default());
        assert_eq!(grants.network, Network::Inherit);
        assert_eq!(grants.outbound_http, OutboundHttp::All);
        assert_eq!(grants.preopens, None);
        assert_eq!(grants.env, EnvGrant::Spec);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = parse(&[("wasmpod.io/netwrok", "none")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown annotation wasmpod.io/netwrok: wasmpod knows wasmpod.io/network, \
             wasmpod.io/outbound-http, wasmpod.io/preopens, wasmpod.io/env"
        );
    }

    #[test]
    fn env() {
        assert_eq!(parse(&[(ENV, "none")]).unwrap().env, EnvGrant::None);
        assert_eq!(parse(&[(ENV, "spec")]).unwrap().env, EnvGrant::Spec);
        let err = parse(&[(ENV, "host")]).unwrap_err().to_string();
        assert_eq!(
            err,
            "annotation wasmpod.io/env=\"host\": unknown value; allowed: `spec` or `none`"
        );
    }

    #[test]
    fn no_network_means_no_http_unless_granted() {
        let grants = parse(&[(NETWORK, "none")]).unwrap();
        assert_eq!(grants.outbound_http, OutboundHttp::None);
        let grants = parse(&[(NETWORK, "none"), (OUTBOUND_HTTP, "https://*.example.com")]).unwrap();
        assert!(grants.outbound_http.allows("https", "api.example.com", 443));
        let grants = parse(&[(NETWORK, "10.0.0.0/8")]).unwrap();
        assert_eq!(grants.outbound_http, OutboundHttp::All);
    }

    #[test]
    fn engines_refuse_what_they_cannot_enforce() {
        let grants = parse(&[(NETWORK, "10.0.0.0/8"), (OUTBOUND_HTTP, "none")]).unwrap();
        assert!(grants.check_engine("wasmtime", true, true).is_ok());
        let err = grants
            .check_engine("wasmer", false, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "annotation wasmpod.io/network: the wasmer engine gives guests no sockets, so \
                 it cannot grant some addresses: use `none` or run the container on wasmtime"
            ),
            "{err}"
        );
        let grants = parse(&[(NETWORK, "none"), (OUTBOUND_HTTP, "https://a.b")]).unwrap();
        assert!(grants.check_engine("wasmer", false, false).is_err());
        assert!(parse(&[(NETWORK, "none")])
            .unwrap()
            .check_engine("wasmer", false, false)
            .is_ok());
    }

    #[test]
    fn too_many_entries() {
        let value = vec!["10.0.0.1"; MAX_ENTRIES + 1].join(",");
        let err = parse(&[(NETWORK, &value)]).unwrap_err().to_string();
        assert!(err.contains("65 entries, at most 64"), "{err}");
    }
}
