//! The guest's WASI context from its container spec, shared by core modules (preview1) and
//! components (0.2): args, env, inherited stdio (containerd's FIFOs), the preopened
//! directories and the network, as the pod's `wasmpod.io/` annotations grant them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use wasmpod_runtime::grants::{Network, NetworkAllowList, SocketUse};
use wasmpod_runtime::{EngineError, GuestContext};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::other;

/// How long resolving a name of the network allow-list may take at a connect.
const NAME_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

pub fn builder(guest: &GuestContext) -> Result<WasiCtxBuilder, EngineError> {
    let mut builder = WasiCtxBuilder::new();
    builder.args(&guest.args).inherit_stdio();
    for kv in &guest.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        builder.env(k, v);
    }
    // Read-only preopens are also read-only mounts (see `wasmpod_runtime::grants`), but
    // wasmtime-wasi 48 reports the kernel's EROFS as `io`: it refuses writes itself first, with
    // `perm` (NotPermitted), which says what happened.
    for dir in guest.dirs() {
        let perms = match dir.writable {
            true => FsPerms::ReadWrite,
            false => FsPerms::ReadOnly,
        };
        builder
            .preopened_dir(&dir.path, &dir.guest_path, perms)
            .map_err(other(&format!("preopen {}", dir.path.display())))?;
    }
    network(&mut builder, &guest.grants.network);
    Ok(builder)
}

/// `wasi:sockets` as granted: everything, nothing, or the allow-list checked at each bind,
/// listen, connect and send. A refused operation fails with WASI's `access-denied`.
fn network(builder: &mut WasiCtxBuilder, grant: &Network) {
    builder.allow_ip_name_lookup(grant.allows_name_lookup());
    match grant {
        Network::Inherit => {
            builder.allow_tcp(true).allow_udp(true).inherit_network();
        }
        Network::None => {
            builder.allow_tcp(false).allow_udp(false);
        }
        Network::Only(list) => {
            let list = Arc::new(list.clone());
            builder
                .allow_tcp(true)
                .allow_udp(true)
                .socket_addr_check(move |addr, use_| {
                    let list = list.clone();
                    Box::pin(async move { check(&list, addr, use_).await })
                });
        }
    }
}

async fn check(list: &NetworkAllowList, addr: SocketAddr, use_: SocketAddrUse) -> bool {
    let use_ = match use_ {
        SocketAddrUse::TcpBind => SocketUse::TcpBind,
        SocketAddrUse::TcpListen => SocketUse::TcpListen,
        SocketAddrUse::TcpConnect => SocketUse::TcpConnect,
        SocketAddrUse::UdpBind => SocketUse::UdpBind,
        SocketAddrUse::UdpSend => SocketUse::UdpConnect,
        // Inbound: what may reach a socket was decided when it was bound.
        SocketAddrUse::TcpAccept | SocketAddrUse::UdpReceive => return true,
    };
    let mut resolved: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for name in list.names_for(addr, use_) {
        let lookup = tokio::net::lookup_host((name, addr.port()));
        let addrs = match tokio::time::timeout(NAME_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
            _ => Vec::new(),
        };
        resolved.insert(name.to_string(), addrs);
    }
    let allowed = list.allows(addr, use_, &|name| {
        resolved.get(name).cloned().unwrap_or_default()
    });
    if !allowed {
        eprintln!("wasmpod: {use_:?} {addr} refused: not in wasmpod.io/network");
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmpod_runtime::grants::Grants;

    fn allow_list(value: &str) -> NetworkAllowList {
        let pairs = [("wasmpod.io/network", value)];
        match Grants::from_annotations(pairs).map(|g| g.network) {
            Ok(Network::Only(list)) => list,
            other => panic!("{value}: {other:?}"),
        }
    }

    #[test]
    fn the_check_resolves_names_and_maps_each_use() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let list = allow_list("localhost:8080, 10.0.0.0/8:443, listen=9000");
        let allowed = |addr: &str, use_| {
            let addr = addr.parse().expect("an address");
            runtime.block_on(check(&list, addr, use_))
        };
        // `localhost` is looked up at the connect, and only admits its port.
        assert!(allowed("127.0.0.1:8080", SocketAddrUse::TcpConnect));
        assert!(!allowed("127.0.0.1:8081", SocketAddrUse::TcpConnect));
        assert!(!allowed("10.9.9.9:8080", SocketAddrUse::TcpConnect));
        assert!(allowed("10.1.2.3:443", SocketAddrUse::UdpSend));
        assert!(!allowed("11.1.2.3:443", SocketAddrUse::UdpSend));
        assert!(allowed("0.0.0.0:9000", SocketAddrUse::TcpBind));
        assert!(allowed("0.0.0.0:9000", SocketAddrUse::TcpListen));
        assert!(!allowed("0.0.0.0:9001", SocketAddrUse::TcpListen));
        assert!(allowed("0.0.0.0:0", SocketAddrUse::UdpBind));
        // What reaches a bound socket is not checked again.
        assert!(allowed("192.0.2.1:5", SocketAddrUse::TcpAccept));
        assert!(allowed("192.0.2.1:5", SocketAddrUse::UdpReceive));
    }
}
