//! `wasmpod.io/network`: which sockets a guest may open.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::ports::{self, PortRange};
use super::{entries, GrantError, NETWORK};

/// The guest's network grant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// The pod's network as a native process has it (no annotation).
    #[default]
    Inherit,
    /// No sockets and no name lookup.
    None,
    /// Only the listed destinations and listening ports; name lookup is allowed.
    Only(NetworkAllowList),
}

/// What a socket operation does with an address, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketUse {
    /// Connecting a TCP socket.
    TcpConnect,
    /// Binding a TCP socket: port 0 (an implicit bind before a connect, or an ephemeral
    /// port) is always allowed, others must be listening ports.
    TcpBind,
    /// Listening on a bound TCP socket, at the port it is bound to.
    TcpListen,
    /// Binding a UDP socket.
    UdpBind,
    /// Connecting a UDP socket or sending a datagram to an address.
    UdpConnect,
}

/// Destinations and listening ports of [`Network::Only`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkAllowList {
    /// Where the guest may connect (TCP) or send (UDP).
    pub connect: Vec<Endpoint>,
    /// Ports the guest may bind, to listen or to receive datagrams.
    pub listen: Vec<PortRange>,
}

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Which hosts.
    pub host: HostMatch,
    /// Which of their ports.
    pub ports: Vec<PortRange>,
}

/// The host part of an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `*`: any address.
    Any,
    /// An address or a CIDR block.
    Net(IpNet),
    /// A DNS name, matched by the addresses it resolves to when the guest connects.
    Name(String),
}

impl Network {
    pub(super) fn parse(value: &str) -> Result<Self, GrantError> {
        if value.trim() == "none" {
            return Ok(Self::None);
        }
        let mut list = NetworkAllowList::default();
        for entry in entries(NETWORK, value)? {
            let bad = |reason: String| GrantError::malformed(NETWORK, value, reason);
            if entry == "none" {
                return Err(bad("`none` cannot be combined with other entries".into()));
            }
            if let Some(ports) = entry.strip_prefix("listen=") {
                list.listen
                    .extend(ports::parse_list(ports).map_err(|e| bad(format!("{entry}: {e}")))?);
                continue;
            }
            list.connect
                .push(parse_endpoint(entry).map_err(|e| bad(format!("{entry}: {e}")))?);
        }
        Ok(Self::Only(list))
    }

    /// Whether the guest may look names up.
    pub fn allows_name_lookup(&self) -> bool {
        !matches!(self, Self::None)
    }
}

impl NetworkAllowList {
    /// The DNS names of the endpoints that could admit `addr` for `use_` by their ports: the
    /// engine resolves these before [`NetworkAllowList::allows`].
    pub fn names_for(&self, addr: SocketAddr, use_: SocketUse) -> Vec<&str> {
        if !is_outgoing(use_) {
            return Vec::new();
        }
        self.connect
            .iter()
            .filter(|e| e.ports.iter().any(|p| p.contains(addr.port())))
            .filter_map(|e| match &e.host {
                HostMatch::Name(name) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether `use_` of `addr` is allowed; `resolved(name)` gives the addresses of a DNS name
    /// of the list (those [`NetworkAllowList::names_for`] returned; others may give none).
    /// Binding port 0 (an ephemeral port, as a client does) is allowed; listening needs one
    /// of the listening ports.
    pub fn allows(
        &self,
        addr: SocketAddr,
        use_: SocketUse,
        resolved: &dyn Fn(&str) -> Vec<IpAddr>,
    ) -> bool {
        let port = addr.port();
        match use_ {
            SocketUse::TcpListen => port != 0 && self.listen.iter().any(|p| p.contains(port)),
            SocketUse::TcpBind | SocketUse::UdpBind => {
                port == 0 || self.listen.iter().any(|p| p.contains(port))
            }
            SocketUse::TcpConnect | SocketUse::UdpConnect => {
                let ip = canonical(addr.ip());
                self.connect.iter().any(|endpoint| {
                    endpoint.ports.iter().any(|p| p.contains(port))
                        && match &endpoint.host {
                            HostMatch::Any => true,
                            HostMatch::Net(net) => net.contains(&ip),
                            HostMatch::Name(name) => {
                                resolved(name).into_iter().any(|a| canonical(a) == ip)
                            }
                        }
                })
            }
        }
    }
}

fn is_outgoing(use_: SocketUse) -> bool {
    matches!(use_, SocketUse::TcpConnect | SocketUse::UdpConnect)
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn parse_endpoint(entry: &str) -> Result<Endpoint, String> {
    let (host, ports) = split_host_port(entry)?;
    let ports = match ports {
        Some(p) => ports::parse_list(p)?,
        None => vec![PortRange::ANY],
    };
    Ok(Endpoint {
        host: parse_host(host)?,
        ports,
    })
}

/// `[v6…]:PORTS`, `[v6…]`, bare IPv6 (several colons, no port), or `HOST:PORTS` / `HOST`.
fn split_host_port(entry: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "an opening [ without its ]".to_string())?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(ports) => Ok((host, Some(ports))),
                None => Err(format!("unexpected {after:?} after ]")),
            },
        };
    }
    if entry.matches(':').count() > 1 {
        return Ok((entry, None));
    }
    Ok(match entry.split_once(':') {
        Some((host, ports)) => (host, Some(ports)),
        None => (entry, None),
    })
}

fn parse_host(host: &str) -> Result<HostMatch, String> {
    if host == "*" {
        return Ok(HostMatch::Any);
    }
    if let Ok(net) = host.parse::<IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "{host} has host bits set beyond its prefix (did you mean {}?)",
                net.trunc()
            ));
        }
        return Ok(HostMatch::Net(net));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostMatch::Net(IpNet::from(ip)));
    }
    if host.contains('*') {
        return Err(
            "wildcard names cannot be matched against addresses (use a CIDR, or \
             wasmpod.io/outbound-http for HTTP hosts)"
                .to_string(),
        );
    }
    if is_dns_name(host) {
        return Ok(HostMatch::Name(host.to_ascii_lowercase()));
    }
    Err(format!(
        "{host:?} is neither an address, a CIDR block nor a host name"
    ))
}

pub(super) fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(value: &str) -> NetworkAllowList {
        match Network::parse(value).unwrap() {
            Network::Only(list) => list,
            other => panic!("{other:?}"),
        }
    }

    fn no_names(_: &str) -> Vec<IpAddr> {
        Vec::new()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn none() {
        assert_eq!(Network::parse(" none ").unwrap(), Network::None);
        assert!(!Network::None.allows_name_lookup());
        assert!(Network::Inherit.allows_name_lookup());
    }

    #[test]
    fn cidr_and_ports() {
        let list = only("10.0.0.0/8:5432, 192.168.1.7, [fd00::/8]:443;8443, listen=8080;9000-9001");
        let allows = |a: &str, u| list.allows(addr(a), u, &no_names);
        assert!(allows("10.1.2.3:5432", SocketUse::TcpConnect));
        assert!(!allows("10.1.2.3:5433", SocketUse::TcpConnect));
        assert!(!allows("11.1.2.3:5432", SocketUse::TcpConnect));
        assert!(allows("192.168.1.7:1", SocketUse::UdpConnect));
        assert!(allows("[::ffff:192.168.1.7]:80", SocketUse::TcpConnect));
        assert!(allows("[fd00::1]:8443", SocketUse::TcpConnect));
        assert!(!allows("[fe80::1]:443", SocketUse::TcpConnect));
        assert!(allows("0.0.0.0:8080", SocketUse::TcpBind));
        assert!(allows("0.0.0.0:8080", SocketUse::TcpListen));
        assert!(allows("[::]:9001", SocketUse::TcpListen));
        assert!(!allows("0.0.0.0:8081", SocketUse::TcpBind));
        assert!(!allows("0.0.0.0:8081", SocketUse::TcpListen));
        assert!(allows("0.0.0.0:0", SocketUse::TcpBind));
        assert!(!allows("0.0.0.0:0", SocketUse::TcpListen));
        assert!(!allows("0.0.0.0:40000", SocketUse::TcpListen));
        assert!(allows("0.0.0.0:0", SocketUse::UdpBind));
        assert!(!allows("0.0.0.0:53", SocketUse::UdpBind));
    }

    #[test]
    fn names_match_their_addresses() {
        let list = only("db.pod.svc:5432,*:443,fd00::1");
        assert_eq!(
            list.names_for(addr("10.0.0.9:5432"), SocketUse::TcpConnect),
            ["db.pod.svc"]
        );
        assert!(list
            .names_for(addr("10.0.0.9:80"), SocketUse::TcpConnect)
            .is_empty());
        let resolve = |name: &str| match name {
            "db.pod.svc" => vec!["10.0.0.9".parse().unwrap()],
            _ => Vec::new(),
        };
        assert!(list.allows(addr("10.0.0.9:5432"), SocketUse::TcpConnect, &resolve));
        assert!(!list.allows(addr("10.0.0.8:5432"), SocketUse::TcpConnect, &resolve));
        assert!(list.allows(addr("1.2.3.4:443"), SocketUse::TcpConnect, &resolve));
        assert!(list.allows(addr("[fd00::1]:1"), SocketUse::TcpConnect, &resolve));
        assert!(!list.allows(addr("0.0.0.0:443"), SocketUse::TcpListen, &resolve));
    }

    #[test]
    fn malformed() {
        for value in [
            "",
            " , ",
            "none,10.0.0.1",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0.1:http",
            "10.0.0.1:0",
            "*.example.com:443",
            "[fd00::1",
            "[fd00::1]x",
            "listen=",
            "listen=99999",
            "exa mple:80",
        ] {
            let err = Network::parse(value).unwrap_err().to_string();
            assert!(
                err.starts_with("annotation wasmpod.io/network="),
                "{value}: {err}"
            );
            assert!(err.contains("allowed: `none`, or"), "{value}: {err}");
        }
    }
}
