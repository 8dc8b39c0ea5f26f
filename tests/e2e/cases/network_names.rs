//! Name lookup in pods (`wasi:sockets/ip-name-lookup`, done by the guest's init with glibc's
//! resolver inside the container): the pod's hostname through `/etc/hosts` as kubelet writes
//! it, and names served by a DNS server the test runs on the CNI bridge's gateway, set as the
//! pod's nameserver (CRI's `DNSConfig`). A `HOST:PORTS` entry of `wasmpod.io/network` admits
//! the addresses its name resolves to when the guest connects.

use std::net::Ipv4Addr;

use anyhow::{ensure, Result};
use k8s_cri::v1::DnsConfig;
use wasmpod_e2e::cri::pod::with_mount;
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::dns::DnsServer;
use wasmpod_e2e::{cases, Case, Env};

use crate::cri_support::*;
use crate::network::{guest, run_ok, run_refused, start_echo_sidecar, SOCKET_ENGINES};

pub fn cases() -> Vec<Case> {
    cases![only_on(SOCKET_ENGINES):
        net_component_reaches_sidecar_by_address_and_hostname,
        net_lookup_through_pod_dns,
    ]
}

/// The component reaches a native sidecar of its pod at 127.0.0.1 and at the pod's hostname,
/// which it looks up through the pod's `/etc/hosts` (written and mounted as kubelet does:
/// `<pod IP> <hostname>`).
fn net_component_reaches_sidecar_by_address_and_hostname(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "net-sidecar", env.cri_handler(), &env.pod_logs_root())?;
    const PORT: u16 = 7071;
    let ip = start_echo_sidecar(&pod, PORT)?;
    let hostname = pod.config.hostname.clone();
    let hosts = pod.log_dir.join("etc-hosts");
    std::fs::write(
        &hosts,
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost \
             ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"
        ),
    )?;
    let with_hosts = |config| with_mount(config, &hosts, "/etc/hosts", true);

    run_ok(
        env,
        &pod,
        &guest("by-address", &["tcp-get", "127.0.0.1:7071", "hi"], None),
        "hi\ntcp-get 127.0.0.1:7071: OK\n",
    )?;
    run_ok(
        env,
        &pod,
        &with_hosts(guest("lookup", &["lookup", &hostname], None)),
        &format!("{ip}\nlookup {hostname}: OK\n"),
    )?;
    let target = format!("{hostname}:{PORT}");
    run_ok(
        env,
        &pod,
        &with_hosts(guest("by-name", &["tcp-get", &target, "hello"], None)),
        &format!("hello\ntcp-get {target}: OK\n"),
    )?;
    remove_and_assert_gone(env, &mut pod, &[])
}

/// The pod's nameserver is a DNS server on the bridge's gateway knowing `svc.wasmpod.test`
/// (192.0.2.7, TEST-NET-1) and `echo.wasmpod.test` (127.0.0.1, where the echo sidecar is): the
/// guest looks the first up, an unknown name fails, and an allow-list naming
/// `echo.wasmpod.test:7078` admits 127.0.0.1:7078 (resolved by the init at the connect) but
/// not the pod IP.
fn net_lookup_through_pod_dns(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let gateway: Ipv4Addr = env.containerd().network().gateway().parse()?;
    let mut pod = Pod::run_with(
        cri,
        "net-dns",
        env.cri_handler(),
        &env.pod_logs_root(),
        |config| {
            config.dns_config = Some(DnsConfig {
                servers: vec![gateway.to_string()],
                searches: vec!["wasmpod.test".to_string()],
                options: Vec::new(),
            })
        },
    )?;
    // The gateway's address exists once CNI has set up the bridge, i.e. after a pod started;
    // the server is in place before the first lookup.
    let dns = DnsServer::start(
        gateway,
        &[
            ("svc.wasmpod.test", Ipv4Addr::new(192, 0, 2, 7)),
            ("echo.wasmpod.test", Ipv4Addr::LOCALHOST),
        ],
    )?;
    const PORT: u16 = 7078;
    let ip = start_echo_sidecar(&pod, PORT)?;
    run_ok(
        env,
        &pod,
        &guest("lookup", &["lookup", "svc.wasmpod.test"], None),
        "192.0.2.7\nlookup svc.wasmpod.test: OK\n",
    )?;
    run_refused(
        env,
        &pod,
        &guest("unknown", &["lookup", "nothere.wasmpod.test"], None),
        "failed to lookup address information: Name does not resolve",
    )?;
    let grant = Some("echo.wasmpod.test:7078");
    run_ok(
        env,
        &pod,
        &guest(
            "by-name",
            &["tcp-get", "echo.wasmpod.test:7078", "hi"],
            grant,
        ),
        "hi\ntcp-get echo.wasmpod.test:7078: OK\n",
    )?;
    let pod_addr = format!("{ip}:{PORT}");
    run_refused(
        env,
        &pod,
        &guest("pod-ip", &["tcp-get", &pod_addr, "hi"], grant),
        &format!("tcp-get {pod_addr}: error: PermissionDenied"),
    )?;
    ensure!(
        dns.queries() > 0,
        "the pod's lookups never reached its nameserver {}",
        dns.addr()
    );
    remove_and_assert_gone(env, &mut pod, &[])
}
