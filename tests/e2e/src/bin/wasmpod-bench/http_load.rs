//! The wasi:http load bench: `wrk` at 50 connections against the proxy fixture served by the
//! wasmtime shim in a pod (its direct route `/`, and `/fetch`, which makes one outgoing
//! request to a native busybox `httpd` sidecar of the same pod per incoming request), and
//! against a native busybox `httpd` in a runc pod, same run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::container_config;
use wasmpod_e2e::cri::{Pod, RUNC_HANDLER, WASM_HANDLER};
use wasmpod_e2e::leaks::wait_until;
use wasmpod_e2e::{Env, BUSYBOX_IMAGE, WASM_IMAGE};

const PORT: u16 = 8080;
/// The wasm pod's native sidecar, the target of the proxy's outgoing requests.
const SIDECAR_PORT: u16 = 8081;
const CONNECTIONS: u32 = 50;
const THREADS: u32 = 2;

/// wrk's summary, printed by [`REPORT_LUA`]'s `done()` on one line.
const REPORT_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wasmpod-bench requests=%d duration_us=%d socket_errors=%d non2xx=%d p50_us=%d p95_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95)))
end
"#;

pub struct LoadResult {
    pub name: &'static str,
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p95: Duration,
    pub socket_errors: u64,
}

/// Fails with what to install when `wrk` is missing (only the bench needs it).
pub fn require_wrk() -> Result<()> {
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "wrk not found ({e}): the wasi:http load bench needs it; run \
             `tools/install-deps.sh --bench` or `apt-get install wrk`"
        ),
    }
}

/// Starts both servers, warms each up, then loads each for `seconds`.
pub fn bench(env: &Env, seconds: u32) -> Result<Vec<LoadResult>> {
    let cri = env.cri()?;
    let script = env.containerd().base().join("wrk-report.lua");
    std::fs::write(&script, REPORT_LUA).context("writing the wrk script")?;

    let wasm_pod = Pod::run(cri, "bench-http-wasm", WASM_HANDLER, &env.pod_logs_root())?;
    let wasm = wasm_pod.start(&container_config(
        "proxy",
        WASM_IMAGE,
        &["/http.component.wasm"],
    ))?;
    let sidecar_port = SIDECAR_PORT.to_string();
    let sidecar = wasm_pod.start(&container_config(
        "sidecar",
        BUSYBOX_IMAGE,
        &["/bin/httpd", "-f", "-p", &sidecar_port, "-h", "/data"],
    ))?;
    let native_pod = Pod::run(cri, "bench-http-native", RUNC_HANDLER, &env.pod_logs_root())?;
    let port = PORT.to_string();
    let native = native_pod.start(&container_config(
        "httpd",
        BUSYBOX_IMAGE,
        &["/bin/httpd", "-f", "-p", &port, "-h", "/data"],
    ))?;
    let fetch = format!("/fetch?url=http://127.0.0.1:{SIDECAR_PORT}/hello.txt");
    // The native subject last: the report's ratios are to it.
    let subjects = [
        ("wasmtime wasi:http proxy", &wasm_pod, &wasm, "/"),
        (
            "proxy + 1 outgoing request",
            &wasm_pod,
            &wasm,
            fetch.as_str(),
        ),
        (
            "native busybox httpd (runc)",
            &native_pod,
            &native,
            "/hello.txt",
        ),
    ];
    let sidecar_running = wait_until(Duration::from_secs(30), || {
        cri.container_status(&sidecar)
            .is_ok_and(|s| s.state == ContainerState::ContainerRunning as i32)
    });
    ensure!(sidecar_running, "the sidecar {sidecar} is not running");
    let mut urls = Vec::new();
    for (name, pod, id, path) in subjects {
        let running = wait_until(Duration::from_secs(30), || {
            cri.container_status(id)
                .is_ok_and(|s| s.state == ContainerState::ContainerRunning as i32)
        });
        ensure!(running, "{name}: container {id} is not running");
        let url = format!("http://{}:{PORT}{path}", pod.ip()?);
        let answers = wait_until(Duration::from_secs(20), || {
            wrk(&url, &script, 1, 1, 1).is_ok_and(|r| r.requests_per_sec > 0.0)
        });
        ensure!(answers, "{name} does not answer at {url}");
        urls.push((name, url));
    }
    let mut results = Vec::new();
    for (name, url) in &urls {
        wrk(url, &script, THREADS, CONNECTIONS, 2).with_context(|| format!("warming up {name}"))?;
    }
    for (name, url) in urls {
        let mut result = wrk(&url, &script, THREADS, CONNECTIONS, seconds)
            .with_context(|| format!("loading {name} at {url}"))?;
        result.name = name;
        results.push(result);
    }
    Ok(results)
}

fn wrk(
    url: &str,
    script: &Path,
    threads: u32,
    connections: u32,
    seconds: u32,
) -> Result<LoadResult> {
    let out = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--timeout", "5s", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "wrk {url}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("wasmpod-bench "))
        .with_context(|| format!("no summary line in wrk's output:\n{stdout}"))?;
    let field = |key: &str| -> Result<u64> {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {key} in {line:?}"))
    };
    let non2xx = field("non2xx")?;
    ensure!(non2xx == 0, "{url}: {non2xx} responses were not 2xx or 3xx");
    let duration = field("duration_us")?.max(1) as f64 / 1e6;
    Ok(LoadResult {
        name: "",
        requests_per_sec: field("requests")? as f64 / duration,
        p50: Duration::from_micros(field("p50_us")?),
        p95: Duration::from_micros(field("p95_us")?),
        socket_errors: field("socket_errors")?,
    })
}
