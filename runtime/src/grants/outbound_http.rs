//! `wasmpod.io/outbound-http`: which hosts a guest's `wasi:http` requests may reach, in the
//! form of Spin's `allowed_outbound_hosts` (`https://*.example.com`, `http://10.0.0.1:8080`).

use std::fmt;

use super::network::is_dns_name;
use super::{entries, GrantError, OUTBOUND_HTTP};

/// The guest's outgoing HTTP grant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutboundHttp {
    /// Any host (no annotation).
    #[default]
    All,
    /// No request at all.
    None,
    /// Only requests matching one of the patterns.
    Only(Vec<UrlPattern>),
}

/// `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    /// `http` or `https`; `None` for `*`.
    pub scheme: Option<String>,
    /// A lowercase host; `*` for any, `*.domain` for its subdomains (not the domain itself).
    pub host: String,
    /// A port; `None` for the scheme's default port, `Some(None)` for `*`.
    pub port: Option<Option<u16>>,
}

impl OutboundHttp {
    pub(super) fn parse(value: &str) -> Result<Self, GrantError> {
        if value.trim() == "none" {
            return Ok(Self::None);
        }
        let patterns = entries(OUTBOUND_HTTP, value)?
            .into_iter()
            .map(|entry| {
                UrlPattern::parse(entry).map_err(|reason| {
                    GrantError::malformed(OUTBOUND_HTTP, value, format!("{entry}: {reason}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self::Only(patterns))
    }

    /// Whether a request to `scheme://host:port` may be sent (`port` is the request's, its
    /// scheme's default when the URL has none).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        match self {
            Self::All => true,
            Self::None => false,
            Self::Only(patterns) => patterns.iter().any(|p| p.matches(scheme, host, port)),
        }
    }
}

impl UrlPattern {
    fn parse(entry: &str) -> Result<Self, String> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| "no scheme (write http://, https:// or *://)".to_string())?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "*" => None,
            s @ ("http" | "https") => Some(s.to_string()),
            other => return Err(format!("scheme {other:?} is not http, https or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err("only scheme://host[:port], without a path, query or user".to_string());
        }
        let (host, port) = split_port(rest)?;
        let port = match port {
            None => None,
            Some("*") => Some(None),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(Some(n)),
                _ => return Err(format!("{p:?} is not a port (1-65535 or *)")),
            },
        };
        // IPv6 hosts are kept without their brackets.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let valid = host == "*"
            || name.parse::<std::net::IpAddr>().is_ok() && name == host
            || is_dns_name(name);
        if !valid {
            return Err(format!("{host:?} is not a host name, *.domain, an IP or *"));
        }
        Ok(Self { scheme, host, port })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme = scheme.to_ascii_lowercase();
        if self.scheme.as_ref().is_some_and(|s| *s != scheme) {
            return false;
        }
        let port_ok = match self.port {
            Some(None) => true,
            Some(Some(p)) => p == port,
            None => default_port(&scheme) == Some(port),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            _ if self.host == "*" => true,
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => self.host == host,
        };
        port_ok && host_ok
    }
}

impl fmt::Display for UrlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.as_deref().unwrap_or("*");
        match self.host.contains(':') {
            true => write!(f, "{scheme}://[{}]", self.host)?,
            false => write!(f, "{scheme}://{}", self.host)?,
        }
        match self.port {
            None => Ok(()),
            Some(None) => f.write_str(":*"),
            Some(Some(p)) => write!(f, ":{p}"),
        }
    }
}

/// `host[:port]`, with IPv6 hosts in brackets.
fn split_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if text.starts_with('[') {
        let end = text
            .find(']')
            .ok_or_else(|| "an opening [ without its ]".to_string())?;
        let host = &text[..=end];
        return match &text[end + 1..] {
            "" => Ok((host, None)),
            rest => rest
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or_else(|| format!("unexpected {rest:?} after ]")),
        };
    }
    Ok(match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

/// The port a URL of `scheme` means when it names none.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(value: &str) -> OutboundHttp {
        OutboundHttp::parse(value).unwrap()
    }

    #[test]
    fn patterns() {
        let grant = only("https://*.example.com, http://10.0.0.7:8080, *://api.test:*");
        assert!(grant.allows("https", "a.example.com", 443));
        assert!(grant.allows("https", "A.B.Example.com", 443));
        assert!(!grant.allows("https", "example.com", 443));
        assert!(!grant.allows("https", "badexample.com", 443));
        assert!(!grant.allows("https", "a.example.com", 8443));
        assert!(!grant.allows("http", "a.example.com", 80));
        assert!(grant.allows("http", "10.0.0.7", 8080));
        assert!(!grant.allows("http", "10.0.0.7", 80));
        assert!(grant.allows("http", "api.test", 1234));
        assert!(grant.allows("https", "api.test", 443));
        assert!(!grant.allows("https", "other.test", 443));
        let v6 = only("http://[fd00::1]:80");
        assert!(v6.allows("http", "[fd00::1]", 80));
        assert!(v6.allows("http", "fd00::1", 80));
        assert!(OutboundHttp::All.allows("http", "x", 1));
        assert!(!OutboundHttp::None.allows("http", "x", 80));
        assert!(only("https://*").allows("https", "anything.at.all", 443));
    }

    #[test]
    fn malformed() {
        for value in [
            "",
            "example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com:0",
            "https://example.com:https",
            "https://exa mple.com",
            "https://foo.*.com",
            "https://[fd00::1",
        ] {
            let err = OutboundHttp::parse(value).unwrap_err().to_string();
            assert!(
                err.starts_with("annotation wasmpod.io/outbound-http="),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn display() {
        assert_eq!(
            UrlPattern::parse("*://Example.com:*").unwrap().to_string(),
            "*://example.com:*"
        );
        assert_eq!(
            UrlPattern::parse("http://[FD00::1]:80")
                .unwrap()
                .to_string(),
            "http://[fd00::1]:80"
        );
    }
}
