//! OpenTelemetry (issue 14 §4): with an OTLP endpoint in containerd's environment a container's
//! task verbs arrive at a collector (our own receiver, `http/protobuf` and `grpc`) as one trace
//! with Create's steps as children; without one the shim has no exporter thread and sends
//! nothing; an unreachable collector never fails a container and is logged once per shim.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};
use wasmpod_e2e::leaks::{self, poll, wait_until};
use wasmpod_e2e::otlp::{Protocol, Receiver, Span};
use wasmpod_e2e::{cases, Case, Env};

use crate::support::{daemon_of, kill_and_delete, run_detached};

pub fn cases() -> Vec<Case> {
    cases![
        otel_http_protobuf_one_trace_per_container,
        otel_grpc_one_trace_per_container,
        otel_off_without_endpoint,
        otel_off_when_sdk_disabled,
        otel_unreachable_endpoint_never_fails_a_container,
    ]
}

const MODULE: &str = "/testprog.wasm";
const FIXTURE: &str = "wasm/testprog.wasm";
const SLEEP: &[&str] = &[MODULE, "sleep", "300"];
/// The name of the shim's exporter threads (`shim/src/otel/export.rs`).
const EXPORT_THREAD: &str = "otel-export";
/// The shim's warning when an export fails after one that worked (or the first).
const EXPORT_FAILED: &str = "OpenTelemetry export failed";
/// How long the spans of a shim may take to arrive: they go out at the latest when it exits.
const ARRIVAL: Duration = Duration::from_secs(20);

fn otel_http_protobuf_one_trace_per_container(shared: &Env) -> Result<()> {
    one_trace_per_container(shared, Protocol::HttpProtobuf)
}

fn otel_grpc_one_trace_per_container(shared: &Env) -> Result<()> {
    one_trace_per_container(shared, Protocol::Grpc)
}

/// The thread names of process `pid`.
fn threads(pid: u32) -> Result<Vec<String>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("threads of {pid}"))?;
    Ok(tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect())
}

fn exporter_threads(pid: u32) -> Result<Vec<String>> {
    Ok(threads(pid)?
        .into_iter()
        .filter(|t| t.starts_with(EXPORT_THREAD) || t.starts_with("OpenTelemetry"))
        .collect())
}

/// Waits until the shim daemon `pid` has exited (it sends its last spans on the way out).
fn wait_exit(pid: u32) -> Result<()> {
    let gone = wait_until(Duration::from_secs(15), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    ensure!(gone, "shim daemon {pid} still running");
    Ok(())
}

fn digest(env: &Env) -> Result<String> {
    let module = std::fs::read(env.fixtures_dir().join(FIXTURE))?;
    let hex: String = Sha256::digest(&module)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}

fn describe(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} trace={} span={} parent={} {:?} error={:?}",
                s.name, s.trace_id, s.span_id, s.parent_span_id, s.attributes, s.error
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A wasm container run, killed and deleted through a shim that exports to our receiver.
fn one_trace_per_container(shared: &Env, protocol: Protocol) -> Result<()> {
    let receiver = Receiver::start(protocol)?;
    let endpoint = receiver.endpoint();
    let mut env = Env::with_shim_env(
        shared.shim_dir(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.name()),
            ("OTEL_SERVICE_NAME", "wasmpod-e2e"),
        ],
    )
    .context("starting a private containerd with an OTLP endpoint")?;
    env.require_shim()?;
    // Ids are per containerd and the state root is the host's: distinct names per case.
    let tag = match protocol {
        Protocol::HttpProtobuf => "http",
        Protocol::Grpc => "grpc",
    };
    let id = env.unique_id(&format!("otel-trace-{tag}"));
    run_detached(&env, &env.runtime(), &[], env.wasm_image()?, &id, SLEEP)?;
    let (daemon, _) = daemon_of(&env, &id)?;
    let exporters = exporter_threads(daemon.proc.pid)?;
    ensure!(
        exporters.iter().any(|t| t == EXPORT_THREAD),
        "no {EXPORT_THREAD} thread in the exporting shim: {:?}",
        threads(daemon.proc.pid)?
    );
    kill_and_delete(&env, &id)?;
    wait_exit(daemon.proc.pid)?;

    let what = format!("Create, Start, Kill and Delete spans of {id}");
    let spans = poll(ARRIVAL, &what, || {
        let spans = receiver.spans();
        let create = spans
            .iter()
            .find(|s| s.name == "Create" && s.attr("container.id") == id);
        let Some(create) = create else {
            return Ok(None);
        };
        let trace: Vec<Span> = spans
            .iter()
            .filter(|s| s.trace_id == create.trace_id)
            .cloned()
            .collect();
        let all = ["Start", "Kill", "Delete"]
            .iter()
            .all(|name| trace.iter().any(|s| s.name == *name));
        Ok(all.then_some(trace))
    })?;
    let all = describe(&spans);
    let create = spans
        .iter()
        .find(|s| s.name == "Create")
        .context("no Create")?;
    let digest = digest(&env)?;
    for span in spans
        .iter()
        .filter(|s| s.attributes.contains_key("container.id"))
    {
        ensure!(
            span.attr("container.id") == id
                && span.attr("sandbox.id") == id
                && span.attr("engine") == env.engine().name()
                && span.attr("module.digest") == digest,
            "span {} lacks the container's attributes (want {id}, {}, {digest}):\n{all}",
            span.name,
            env.engine().name()
        );
        ensure!(
            span.service_name.as_deref() == Some("wasmpod-e2e"),
            "OTEL_SERVICE_NAME not honoured: {:?}",
            span.service_name
        );
    }
    ensure!(
        create.parent_span_id.is_empty() && create.error.is_none(),
        "Create should be the root and succeed:\n{all}"
    );
    for name in ["Start", "Kill", "Delete"] {
        ensure!(
            spans
                .iter()
                .any(|s| s.name == name && s.parent_span_id == create.span_id && s.error.is_none()),
            "no successful {name} under Create:\n{all}"
        );
    }
    // Create's steps, in the runtime. A fresh containerd has a fresh module cache: a miss.
    for step in ["detect", "cache_lookup", "compile", "zygote_create"] {
        ensure!(
            spans
                .iter()
                .any(|s| s.name == step && s.parent_span_id == create.span_id),
            "no {step} span under Create:\n{all}"
        );
    }
    let lookup = spans.iter().find(|s| s.name == "cache_lookup");
    ensure!(
        lookup.is_some_and(|s| s.attr("cache.result") == "miss"),
        "the first start of a module should miss the cache:\n{all}"
    );

    // A failed Create carries its error.
    let bad = env.unique_id(&format!("otel-bad-{tag}"));
    let out = env
        .ctr()
        .run_rm(&env.runtime(), env.wasm_image()?, &bad, &["/missing.wasm"])?;
    ensure!(!out.success(), "a missing module should fail: {out}");
    let failed = poll(ARRIVAL, "a failed Create span", || {
        Ok(receiver
            .spans()
            .into_iter()
            .find(|s| s.name == "Create" && s.attr("container.id") == bad))
    })?;
    let error = failed.error.unwrap_or_default();
    ensure!(
        error.contains("missing.wasm"),
        "the failed Create's status should say why: {error:?}"
    );
    env.stop_gracefully()
}

/// The default OTLP ports, where an exporter without an endpoint would send: free here.
fn default_port_receivers() -> Result<Vec<Receiver>> {
    [
        (Protocol::HttpProtobuf, "127.0.0.1:4318"),
        (Protocol::Grpc, "127.0.0.1:4317"),
    ]
    .into_iter()
    .map(|(protocol, addr)| {
        let addr: SocketAddr = addr.parse()?;
        Receiver::start_on(protocol, addr)
            .with_context(|| format!("a receiver on the default OTLP port {addr}"))
    })
    .collect()
}

fn otel_off_without_endpoint(env: &Env) -> Result<()> {
    env.require_shim()?;
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ] {
        ensure!(
            std::env::var_os(var).is_none(),
            "{var} is set in the test's environment (containerd and the shims inherit it)"
        );
    }
    let receivers = default_port_receivers()?;
    assert_no_export(env, "otel-off", &receivers)
}

/// A detached wasm sleeper in `env`: its shim daemon has no exporter thread, and once it is
/// deleted and the shim gone, `receivers` got nothing.
fn assert_no_export(env: &Env, name: &str, receivers: &[Receiver]) -> Result<()> {
    let id = env.unique_id(name);
    run_detached(env, &env.runtime(), &[], env.wasm_image()?, &id, SLEEP)?;
    let (daemon, _) = daemon_of(env, &id)?;
    let exporters = exporter_threads(daemon.proc.pid)?;
    kill_and_delete(env, &id)?;
    ensure!(
        exporters.is_empty(),
        "exporter threads in a shim that should not export: {exporters:?}"
    );
    wait_exit(daemon.proc.pid)?;
    let sent: usize = receivers.iter().map(Receiver::requests).sum();
    ensure!(
        sent == 0,
        "{sent} export requests from a shim that should not export"
    );
    Ok(())
}

/// `OTEL_SDK_DISABLED=true` wins over an endpoint.
fn otel_off_when_sdk_disabled(shared: &Env) -> Result<()> {
    let receiver = Receiver::start(Protocol::HttpProtobuf)?;
    let endpoint = receiver.endpoint();
    let mut env = Env::with_shim_env(
        shared.shim_dir(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SDK_DISABLED", "true"),
        ],
    )
    .context("starting a private containerd with OTEL_SDK_DISABLED")?;
    env.require_shim()?;
    assert_no_export(&env, "otel-disabled", &[receiver])?;
    env.stop_gracefully()
}

fn otel_unreachable_endpoint_never_fails_a_container(shared: &Env) -> Result<()> {
    // A port nobody listens on: bound, then closed.
    let closed = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let endpoint = format!("http://{closed}");
    let mut env = Env::with_shim_env(
        shared.shim_dir(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    )
    .context("starting a private containerd with an unreachable OTLP endpoint")?;
    env.require_shim()?;
    let count_failures = |env: &Env| -> Result<usize> {
        let log = std::fs::read_to_string(env.containerd().log_path())?;
        Ok(log.lines().filter(|l| l.contains(EXPORT_FAILED)).count())
    };

    let id = env.unique_id("otel-unreachable");
    run_detached(&env, &env.runtime(), &[], env.wasm_image()?, &id, SLEEP)?;
    let (daemon, _) = daemon_of(&env, &id)?;
    kill_and_delete(&env, &id)?;
    wait_exit(daemon.proc.pid)?;
    poll(
        ARRIVAL,
        "the shim's export failure in containerd.log",
        || Ok((count_failures(&env)? >= 1).then_some(())),
    )?;

    let quick = env.unique_id("otel-unreachable-rm");
    let out = env.ctr().run_rm(
        &env.runtime(),
        env.wasm_image()?,
        &quick,
        &[MODULE, "exit", "0"],
    )?;
    out.ok()?;
    // Each shim (one per container with ctr) warns once, however many exports fail.
    poll(ARRIVAL, "the second shim's export failure", || {
        Ok((count_failures(&env)? >= 2).then_some(()))
    })?;
    let address = env.containerd().address().display().to_string();
    let idle = wait_until(Duration::from_secs(15), || {
        leaks::processes_matching(&address).is_empty()
    });
    ensure!(idle, "shims still running");
    let n = count_failures(&env)?;
    ensure!(
        n == 2,
        "{n} \"{EXPORT_FAILED}\" lines for two shims (one warning per shim expected)"
    );
    env.stop_gracefully()
}
