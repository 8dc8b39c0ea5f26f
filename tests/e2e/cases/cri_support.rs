//! Helpers shared by the CRI cases: waiting on container states, reading CRI logs, the pod's
//! processes and namespaces on the host, and checking what a removed pod left behind. A plain
//! module, not a case module: it has no `cases()`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::{ContainerState, ContainerStatus};
use wasmpod_e2e::cri::{logs, CriClient};
use wasmpod_e2e::leaks::{poll, wait_until};
use wasmpod_e2e::Env;

pub(crate) use crate::pod_teardown::{remove_and_assert_gone, PodTrace};
use crate::support::{proc_stat, task_pid};

/// How long a container may take to reach a state (image unpack, module compile, 2 cores).
pub(crate) const STATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls ContainerStatus until the container is EXITED; returns that status.
pub(crate) fn wait_exited(cri: &CriClient, id: &str) -> Result<ContainerStatus> {
    wait_state(cri, id, ContainerState::ContainerExited)
}

/// Polls ContainerStatus until the container is in `want`; fails with the last status seen.
pub(crate) fn wait_state(
    cri: &CriClient,
    id: &str,
    want: ContainerState,
) -> Result<ContainerStatus> {
    let mut last = None;
    let reached = wait_until(STATE_TIMEOUT, || match cri.container_status(id) {
        Ok(status) => {
            let done = status.state == want as i32;
            last = Some(status);
            done
        }
        Err(_) => false,
    });
    match last {
        Some(status) if reached => Ok(status),
        last => bail!("container {id} did not reach {want:?} in {STATE_TIMEOUT:?}; last: {last:?}"),
    }
}

/// Asserts an exited container's code and reason (`Completed`, `Error`, `OOMKilled`).
pub(crate) fn expect_exit(status: &ContainerStatus, code: i32, reason: &str) -> Result<()> {
    ensure!(
        status.exit_code == code && status.reason == reason,
        "container {}: want exit {code} reason {reason:?}, got exit {} reason {:?} message {:?}",
        status.id,
        status.exit_code,
        status.reason,
        status.message
    );
    Ok(())
}

/// How long a line may take to reach a CRI log (the shim's FIFO, then containerd's copy).
pub(crate) const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// The container's CRI log as (stdout, stderr) text, after checking every line's format.
/// Waits up to [`LOG_TIMEOUT`] for `expect` to appear in either stream (logs are copied
/// asynchronously); fails when it does not, with what the log held.
pub(crate) fn read_log(path: &Path, expect: &str) -> Result<(String, String)> {
    let mut streams = (String::new(), String::new());
    let what = format!("{expect:?} in the CRI log {}", path.display());
    let found = poll(LOG_TIMEOUT, &what, || {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let entries = logs::parse(&text)?;
        streams = (
            logs::stream_text(&entries, "stdout"),
            logs::stream_text(&entries, "stderr"),
        );
        Ok((streams.0.contains(expect) || streams.1.contains(expect)).then(|| streams.clone()))
    });
    found.with_context(|| format!("stdout: {:?}\nstderr: {:?}", streams.0, streams.1))
}

/// The host pid of a running container's init, from `ctr -n k8s.io task ls`.
pub(crate) fn init_pid(env: &Env, id: &str) -> Result<u32> {
    task_pid(&env.cri_ctr(), id)
}

/// The parent pid of `pid`.
pub(crate) fn ppid(pid: u32) -> Result<u32> {
    proc_stat(pid)
        .map(|(_, ppid, _)| ppid)
        .with_context(|| format!("no ppid in /proc/{pid}/stat"))
}

/// The namespace link of `pid` (e.g. `net:[4026532...]`).
pub(crate) fn namespace(pid: u32, kind: &str) -> Result<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .with_context(|| format!("reading /proc/{pid}/ns/{kind}"))?;
    Ok(link.display().to_string())
}

/// The cgroup path of `pid` in the v1 hierarchy holding `controller`.
pub(crate) fn cgroup_of(pid: u32, controller: &str) -> Result<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    text.lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        })
        .with_context(|| format!("pid {pid} has no {controller} cgroup"))
}

/// Waits until `ip:port` accepts TCP connections (the server listens); fails after `timeout`
/// with the last connect error.
pub(crate) fn wait_listening(ip: &str, port: u16, timeout: Duration) -> Result<()> {
    let addr: SocketAddr = format!("{ip}:{port}").parse()?;
    poll(timeout, &format!("{addr} to accept connections"), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        Ok(Some(()))
    })
}

/// `GET path` from `ip:port`, once (wait for the server first, e.g. with [`wait_listening`]):
/// the body of a 200 answer.
pub(crate) fn http_get(ip: &str, port: u16, path: &str) -> Result<String> {
    get_once(ip, port, path).with_context(|| format!("GET http://{ip}:{port}{path}"))
}

fn get_once(ip: &str, port: u16, path: &str) -> Result<String> {
    let addr = format!("{ip}:{port}").parse()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no header end in {response:?}"))?;
    ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "status: {head:?}"
    );
    Ok(body.to_string())
}
