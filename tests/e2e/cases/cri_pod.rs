//! Pods through CRI, as kubelet drives them: a pod mixing wasm and native containers in one
//! shim, its logs, exit reasons, network, exec and stats.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::{cgroup_parent, container_config};
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::leaks::poll;
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE, HELLO_TXT, WASM_IMAGE};

use crate::cri_support::*;

pub fn cases() -> Vec<Case> {
    cases![
        cri_mixed_pod_end_to_end,
        cri_exec_sync_native_and_wasm,
        cri_stats_report_cpu_and_memory,
    ]
}

const HTTP_PORT: u16 = 8080;

/// RunPodSandbox with our handler and a pod of (a) a wasm container writing to stdout and stderr
/// and exiting, (b) a long-running wasm container, (c) a native busybox httpd; plus a wasm
/// container exiting 3. Checks logs, exit reasons, the shared shim and namespaces, the cgroup
/// parent, the server from the host at the pod IP, and that stop + remove leave nothing.
fn cri_mixed_pod_end_to_end(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "mixed", env.cri_handler(), &env.pod_logs_root())?;

    let printer = pod.start(&container_config(
        "printer",
        WASM_IMAGE,
        &["/testprog.wasm", "stderr", "to-stderr"],
    ))?;
    let failing = pod.start(&container_config(
        "failing",
        WASM_IMAGE,
        &["/testprog.wasm", "exit", "3"],
    ))?;
    let sleeper = pod.start(&container_config(
        "sleeper",
        WASM_IMAGE,
        &["/testprog.wasm", "sleep", "600"],
    ))?;
    let port = HTTP_PORT.to_string();
    let httpd = pod.start(&container_config(
        "httpd",
        BUSYBOX_IMAGE,
        &["/bin/httpd", "-f", "-p", &port, "-h", "/data"],
    ))?;

    // (a) and the failing one: exit codes and reasons, both streams in the CRI log format.
    expect_exit(&wait_exited(cri, &printer)?, 0, "Completed")?;
    expect_exit(&wait_exited(cri, &failing)?, 3, "Error")?;
    let (stdout, stderr) = read_log(&pod.log_path("printer"), "to-stderr")?;
    ensure!(
        stdout == "out\n" && stderr == "to-stderr\n",
        "printer log: stdout {stdout:?}, stderr {stderr:?}"
    );

    // (b) and (c) run; one shim process for the whole pod; shared network and IPC namespaces
    // with the sandbox, own pid namespaces; cgroups under the pod's cgroup parent.
    wait_state(cri, &sleeper, ContainerState::ContainerRunning)?;
    wait_state(cri, &httpd, ContainerState::ContainerRunning)?;
    let sandbox_pid = init_pid(env, &pod.id)?;
    let shim = ppid(sandbox_pid)?;
    for id in [&sleeper, &httpd] {
        let pid = init_pid(env, id)?;
        ensure!(
            ppid(pid)? == shim,
            "container {id} (pid {pid}) is not a child of the pod's shim {shim}"
        );
        for ns in ["net", "ipc"] {
            ensure!(
                namespace(pid, ns)? == namespace(sandbox_pid, ns)?,
                "container {id} does not share the sandbox's {ns} namespace"
            );
        }
        ensure!(
            namespace(pid, "pid")? != namespace(sandbox_pid, "pid")?,
            "container {id} shares the sandbox's pid namespace, the pod asked for its own"
        );
        let want = format!("{}/{id}", cgroup_parent(&pod.uid));
        let got = cgroup_of(pid, "memory")?;
        ensure!(
            got == want,
            "container {id}: memory cgroup {got}, want {want}"
        );
    }
    let shim_exe = std::fs::read_link(format!("/proc/{shim}/exe"))?;
    ensure!(
        shim_exe.ends_with(env.shim_binary()),
        "the pod's shim is {}",
        shim_exe.display()
    );

    // (c) answers from the host at the pod IP.
    let ip = pod.ip()?;
    wait_listening(&ip, HTTP_PORT, Duration::from_secs(10))?;
    let body = http_get(&ip, HTTP_PORT, "/hello.txt")?;
    ensure!(body == HELLO_TXT, "httpd at {ip} served {body:?}");

    // StopPodSandbox stops everything; RemovePodSandbox leaves nothing.
    let ids = [
        printer.as_str(),
        failing.as_str(),
        sleeper.as_str(),
        httpd.as_str(),
    ];
    let trace = PodTrace::observe(env, &pod, &ids)?;
    cri.stop_pod(&pod.id)?;
    for id in [&sleeper, &httpd] {
        let status = cri.container_status(id)?;
        ensure!(
            status.state == ContainerState::ContainerExited as i32,
            "after StopPodSandbox container {id} is {:?}",
            status.state
        );
    }
    pod.remove().context("removing the pod")?;
    trace.assert_gone(env)
}

/// CRI ExecSync (what `kubectl exec` without a TTY uses) of native binaries into a native
/// container and of wasm modules into a wasm container: stdout, stderr and exit codes, in the
/// container's network namespace and cgroup.
fn cri_exec_sync_native_and_wasm(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "exec", env.cri_handler(), &env.pod_logs_root())?;
    let native = pod.start(&container_config(
        "native",
        BUSYBOX_IMAGE,
        &["sleep", "600"],
    ))?;
    let wasm = pod.start(&container_config(
        "wasm",
        WASM_IMAGE,
        &["/testprog.wasm", "sleep", "600"],
    ))?;
    wait_state(cri, &native, ContainerState::ContainerRunning)?;
    wait_state(cri, &wasm, ContainerState::ContainerRunning)?;

    let out = cri.exec_sync(&native, &["cat", "/data/hello.txt"], 10)?;
    ensure!(
        out.exit_code == 0 && out.stdout == HELLO_TXT.as_bytes() && out.stderr.is_empty(),
        "native exec cat: {out:?}"
    );
    let out = cri.exec_sync(&native, &["sh", "-c", "echo to-err >&2; exit 4"], 10)?;
    ensure!(
        out.exit_code == 4 && out.stderr == b"to-err\n",
        "native exec with stderr and exit 4: {out:?}"
    );
    // The exec'd process lives in the container's network namespace and cgroup.
    let init = init_pid(env, &native)?;
    let out = cri.exec_sync(
        &native,
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/net; cat /proc/self/cgroup",
        ],
        10,
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let want_ns = namespace(init, "net")?;
    let want_cgroup = cgroup_of(init, "memory")?;
    ensure!(
        out.exit_code == 0 && text.contains(&want_ns) && text.contains(&want_cgroup),
        "native exec must be in {want_ns} and {want_cgroup}: {text}"
    );

    let out = cri.exec_sync(&wasm, &["/testprog.wasm", "stderr", "wasm-err"], 10)?;
    ensure!(
        out.exit_code == 0 && out.stdout == b"out\n" && out.stderr == b"wasm-err\n",
        "wasm exec: {out:?}"
    );
    let out = cri.exec_sync(&wasm, &["/testprog.wasm", "exit", "5"], 10)?;
    ensure!(out.exit_code == 5, "wasm exec exit 5: {out:?}");
    let out = cri.exec_sync(&wasm, &["/testprog.wasm", "cat", "/data/hello.txt"], 10)?;
    ensure!(
        out.exit_code == 0 && out.stdout == HELLO_TXT.as_bytes(),
        "wasm exec reading the container's rootfs: {out:?}"
    );
    remove_and_assert_gone(env, &mut pod, &[&native, &wasm])
}

/// ContainerStats and ListContainerStats report real CPU time and memory for a busy wasm and a
/// busy native container.
fn cri_stats_report_cpu_and_memory(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "stats", env.cri_handler(), &env.pod_logs_root())?;
    let wasm = pod.start(&container_config(
        "wasm",
        WASM_IMAGE,
        &["/testprog.wasm", "busy"],
    ))?;
    let native = pod.start(&container_config(
        "native",
        BUSYBOX_IMAGE,
        &["sh", "-c", "while :; do :; done"],
    ))?;
    for id in [&wasm, &native] {
        wait_state(cri, id, ContainerState::ContainerRunning)?;
    }
    // Each burns CPU time; on a loaded node it may take a while to get 100 ms of it.
    for id in [&wasm, &native] {
        let what = format!("ContainerStats of {id} to report 100 ms of CPU and a working set");
        let (cpu, memory) = poll(Duration::from_secs(20), &what, || {
            let stats = cri.container_stats(id)?;
            let cpu = stats
                .cpu
                .and_then(|c| c.usage_core_nano_seconds)
                .map_or(0, |v| v.value);
            let memory = stats
                .memory
                .and_then(|m| m.working_set_bytes)
                .map_or(0, |v| v.value);
            Ok((cpu >= 100_000_000 && memory > 0).then_some((cpu, memory)))
        })?;
        ensure!(
            cpu > 0 && memory > 0,
            "container {id}: {cpu} ns, {memory} bytes"
        );
    }
    let listed: Vec<String> = cri
        .list_container_stats(&pod.id)?
        .into_iter()
        .filter_map(|s| s.attributes.map(|a| a.id))
        .collect();
    for id in [&wasm, &native] {
        ensure!(
            listed.contains(id),
            "ListContainerStats lacks {id}: {listed:?}"
        );
    }
    remove_and_assert_gone(env, &mut pod, &[&wasm, &native])
}
