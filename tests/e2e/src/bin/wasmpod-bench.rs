//! `make bench`: median wall times through wasmpod and through runc on the same private
//! containerd, interleaved so machine noise hits both alike. Ratios, not seconds, are what carry
//! over between machines.
//!
//! 1. `ctr run --rm` of one container: the wasm hello on every engine, warm (module in the
//!    node's compile cache) and cold (cache emptied before each run), and busybox `echo`
//!    through wasmpod and through runc.
//! 2. A CRI pod start as kubelet does it: RunPodSandbox, CreateContainer, StartContainer, then
//!    ContainerStatus until the container has exited (pod removal is not timed).
//! 3. wasi:http serving: requests/s and p95 latency with `wrk` at 50 connections against the
//!    proxy fixture in a wasmtime pod (directly, and through a route making one outgoing
//!    wasi:http request to a native `httpd` sidecar per incoming request) and a native busybox
//!    `httpd` in a runc pod (`BENCH_HTTP_SECS`, default 10 s each).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::container_config;
use wasmpod_e2e::cri::{CriClient, Pod, RUNC_HANDLER, WASM_HANDLER};
use wasmpod_e2e::engine::built_engines;
use wasmpod_e2e::{Engine, Env, BUSYBOX_IMAGE, RUNC_RUNTIME, WASM_IMAGE, WASM_RUNTIME};

#[path = "wasmpod-bench/http_load.rs"]
mod http_load;

struct Subject {
    name: String,
    /// A runtime name (`ctr`) or a CRI handler.
    runtime: String,
    wasm: bool,
    /// Empty this engine's compile cache before each run.
    cold: Option<&'static str>,
    args: &'static [&'static str],
    samples: Vec<Duration>,
}

impl Subject {
    fn new(name: &str, runtime: &str, wasm: bool, args: &'static [&'static str]) -> Self {
        Subject {
            name: name.to_string(),
            runtime: runtime.to_string(),
            wasm,
            cold: None,
            args,
            samples: Vec::new(),
        }
    }

    fn cold(mut self, engine: &'static str) -> Self {
        self.cold = Some(engine);
        self
    }
}

const HELLO: &[&str] = &["/hello.wasm"];
const ECHO: &[&str] = &["echo", "hello"];

fn main() -> Result<()> {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let http_secs: u32 = std::env::var("BENCH_HTTP_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    http_load::require_wrk()?;
    let mut env = Env::start().context("starting a private containerd")?;
    env.require_shim()?;
    let mut ctr_subjects = Vec::new();
    for engine in built_engines(env.shim_dir()) {
        let runtime = Engine::new(engine)?.runtime();
        let warm = format!("{engine} wasm hello warm");
        ctr_subjects.push(Subject::new(&warm, &runtime, true, HELLO));
        let cold = format!("{engine} wasm hello cold");
        ctr_subjects.push(Subject::new(&cold, &runtime, true, HELLO).cold(engine));
    }
    ctr_subjects.push(Subject::new(
        "wasmpod native echo",
        WASM_RUNTIME,
        false,
        ECHO,
    ));
    ctr_subjects.push(Subject::new("runc native echo", RUNC_RUNTIME, false, ECHO));
    let mut cri_subjects = [
        Subject::new("wasmpod wasm hello", WASM_HANDLER, true, HELLO),
        Subject::new("wasmpod native echo", WASM_HANDLER, false, ECHO),
        Subject::new("runc native echo", RUNC_HANDLER, false, ECHO),
    ];
    let result = bench_ctr(&env, runs, &mut ctr_subjects)
        .and_then(|()| bench_cri(&env, runs, &mut cri_subjects))
        .and_then(|()| http_load::bench(&env, http_secs));
    env.stop_gracefully()?;
    let http_results = result?;

    report(
        &format!("ctr run --rm, median of {runs} runs each (interleaved, one private containerd):"),
        &mut ctr_subjects,
    );
    report(
        &format!("CRI pod start to container exit, median of {runs} pods each (same containerd):"),
        &mut cri_subjects,
    );
    report_http(http_secs, &http_results);
    Ok(())
}

fn report_http(seconds: u32, results: &[http_load::LoadResult]) {
    println!("wasi:http load, wrk -t2 -c50 -d{seconds}s, one pod each (same containerd):");
    let native = results.last().map_or(1.0, |r| r.requests_per_sec);
    for r in results {
        println!(
            "  {:<28} {:>8.0} req/s  p50 {:>6.2} ms  p95 {:>6.2} ms  socket errors {}  \
             req/s ratio to native {:.2}",
            r.name,
            r.requests_per_sec,
            ms(r.p50),
            ms(r.p95),
            r.socket_errors,
            r.requests_per_sec / native
        );
    }
}

/// One warm-up round each (fills the module cache and the page cache), then `runs` rounds.
fn bench_ctr(env: &Env, runs: usize, subjects: &mut [Subject]) -> Result<()> {
    let wasm_image = env.wasm_image()?.to_string();
    let busybox = env.busybox_image()?.to_string();
    // The shims' compile cache (see `Containerd::start`).
    let cache_root = env.containerd().base().join("module-cache");
    for round in 0..=runs {
        for s in subjects.iter_mut() {
            let image = if s.wasm { &wasm_image } else { &busybox };
            if let Some(engine) = s.cold {
                match std::fs::remove_dir_all(cache_root.join(engine)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        bail!("emptying the {engine} cache: {e}")
                    }
                    _ => {}
                }
            }
            let id = env.unique_id("bench");
            let out = env.ctr().run_rm(&s.runtime, image, &id, s.args)?;
            ensure!(out.success(), "{}: {out}", s.name);
            if round > 0 {
                s.samples.push(out.elapsed);
            }
        }
    }
    Ok(())
}

fn bench_cri(env: &Env, runs: usize, subjects: &mut [Subject]) -> Result<()> {
    let cri = env.cri()?;
    for round in 0..=runs {
        for s in subjects.iter_mut() {
            let elapsed = pod_start(cri, env, s)?;
            if round > 0 {
                s.samples.push(elapsed);
            }
        }
    }
    Ok(())
}

/// RunPodSandbox through CreateContainer/StartContainer to the container's exit; the pod is
/// then removed, untimed.
fn pod_start(cri: &CriClient, env: &Env, s: &Subject) -> Result<Duration> {
    let image = if s.wasm { WASM_IMAGE } else { BUSYBOX_IMAGE };
    let started = Instant::now();
    let mut pod = Pod::run(cri, "bench", &s.runtime, &env.pod_logs_root())?;
    let id = pod.start(&container_config("bench", image, s.args))?;
    let deadline = started + Duration::from_secs(30);
    let elapsed = loop {
        let status = cri.container_status(&id)?;
        if status.state == ContainerState::ContainerExited as i32 {
            ensure!(
                status.exit_code == 0,
                "{}: exit {}",
                s.name,
                status.exit_code
            );
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!("{}: container did not exit in 30 s", s.name);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    pod.remove()?;
    Ok(elapsed)
}

fn report(title: &str, subjects: &mut [Subject]) {
    println!("{title}");
    let runc = median(&mut subjects[subjects.len() - 1].samples.clone());
    for s in subjects.iter_mut() {
        let m = median(&mut s.samples);
        let min = s.samples.first().copied().unwrap_or_default();
        println!(
            "  {:<26} median {:>7.1} ms  min {:>7.1} ms  ratio to runc {:.2}",
            s.name,
            ms(m),
            ms(min),
            ms(m) / ms(runc)
        );
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
