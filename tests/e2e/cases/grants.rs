//! Capabilities granted per pod by annotations (issue 11): `wasmpod.io/preopens` and
//! `wasmpod.io/env` on every engine, and every malformed or unknown `wasmpod.io/` annotation
//! refused at Create, naming the annotation, its value and what is allowed.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_e2e::cri::pod::{annotate_pod, container_config, with_annotation, with_mount};
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, Case, Env, BUSYBOX_IMAGE, BUSYBOX_MODULE};

use crate::cri_support::*;
use crate::hostile_support::ensure_refused;
use crate::pod_teardown::remove_and_assert_gone;

pub fn cases() -> Vec<Case> {
    cases![
        cri_preopens_on_volumes,
        ctr_read_only_root_and_env_none,
        malformed_annotations_are_refused,
        allow_lists_an_engine_cannot_enforce_are_refused,
    ]
}

const PREOPENS: &str = "wasmpod.io/preopens";
const NOTE: &str = "a note on the data volume\n";

fn host_dir(env: &Env, prefix: &str) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env.containerd().base())?)
}

/// How the guest's write to a `:ro` preopen fails. wasmtime refuses it itself with `perm` (its
/// WASI maps the kernel's EROFS to `io`), wasmer passes the read-only mount's refusal on as
/// `io` (its errors have no `rofs`), WasmEdge as EROFS.
fn write_refused(env: &Env) -> &'static str {
    match env.engine().name() {
        "wasmtime" => "Operation not permitted",
        "wasmer" => "I/O error",
        _ => "Read-only file system",
    }
}

/// One exec of testprog in `id`: (exit code, stdout, stderr).
fn testprog(env: &Env, id: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let mut cmd = vec![BUSYBOX_MODULE];
    cmd.extend_from_slice(args);
    let out = env.cri()?.exec_sync(id, &cmd, 20)?;
    Ok((
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A pod whose annotation preopens a read-only data volume and a read-write scratch volume:
/// the wasm guest (its init and its execs) reads the data, cannot write it, writes the scratch volume, and sees nothing else of
/// the container; a container annotation replaces the pod's; a native sidecar of the same pod
/// is not narrowed.
fn cri_preopens_on_volumes(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run_with(
        cri,
        "preopens",
        env.cri_handler(),
        &env.pod_logs_root(),
        |c| annotate_pod(c, PREOPENS, "/data:ro,/scratch:rw"),
    )?;
    let data = host_dir(env, "preopen-data-")?;
    let scratch = host_dir(env, "preopen-scratch-")?;
    std::fs::write(data.path().join("note.txt"), NOTE)?;
    let volumes = |config| {
        with_mount(
            with_mount(config, data.path(), "/data", false),
            scratch.path(),
            "/scratch",
            false,
        )
    };

    let app = pod.start(&volumes(container_config(
        "app",
        BUSYBOX_IMAGE,
        &[BUSYBOX_MODULE, "sleep", "600"],
    )))?;
    wait_state(cri, &app, ContainerState::ContainerRunning)?;

    let (code, stdout, stderr) = testprog(env, &app, &["cat", "/data/note.txt"])?;
    ensure!(
        code == 0 && stdout == NOTE,
        "reading the :ro preopen: {code} {stdout:?} {stderr:?}"
    );

    let (code, stdout, stderr) = testprog(env, &app, &["write", "/data/new.txt", "x"])?;
    ensure!(code != 0, "writing the :ro preopen succeeded: {stdout:?}");
    ensure!(
        !data.path().join("new.txt").exists(),
        "the write to the :ro preopen reached the volume"
    );
    ensure!(
        stderr.contains(write_refused(env)),
        "a write to a :ro preopen: {stderr:?}"
    );

    let (code, stdout, stderr) = testprog(env, &app, &["write", "/scratch/new.txt", "y"])?;
    ensure!(code == 0, "writing the :rw preopen: {stdout:?} {stderr:?}");
    let written = std::fs::read_to_string(scratch.path().join("new.txt"))?;
    ensure!(written == "y", "the :rw preopen's file holds {written:?}");

    // Nothing but the preopens: not the image, not through `..`.
    for path in [
        "/modules/testprog.wasm",
        "/data/../modules/testprog.wasm",
        "/etc/passwd",
    ] {
        let (code, stdout, _) = testprog(env, &app, &["cat", path])?;
        ensure!(
            code != 0,
            "the guest read {path} outside its preopens: {stdout:?}"
        );
    }
    let (code, stdout, _) = testprog(env, &app, &["ls", "/data/.."])?;
    ensure!(
        code != 0 || !stdout.contains("modules"),
        "the guest listed the container's root through /data/..: {stdout:?}"
    );

    // The container's annotation wins over the pod's: here /scratch is read-only.
    let strict = pod.start(&with_annotation(
        volumes(container_config(
            "strict",
            BUSYBOX_IMAGE,
            &[BUSYBOX_MODULE, "write", "/scratch/strict.txt", "z"],
        )),
        PREOPENS,
        "/scratch:ro",
    ))?;
    let status = wait_exited(cri, &strict)?;
    ensure!(
        status.exit_code != 0 && !scratch.path().join("strict.txt").exists(),
        "the container's /scratch:ro did not replace the pod's /scratch:rw: {status:?}"
    );

    // A native container of the pod keeps the container's whole file system, writable.
    let sidecar = pod.start(&volumes(container_config(
        "sidecar",
        BUSYBOX_IMAGE,
        &[
            "sh",
            "-c",
            "echo native > /data/native.txt && touch /made-by-native",
        ],
    )))?;
    expect_exit(&wait_exited(cri, &sidecar)?, 0, "Completed")?;
    ensure!(
        data.path().join("native.txt").exists(),
        "the native sidecar could not write the volume"
    );

    remove_and_assert_gone(env, &mut pod, &[&app, &strict, &sidecar])
}

/// Through ctr: `/:ro` makes the image's root read-only for the guest, and
/// `wasmpod.io/env: none` leaves the guest no environment at all.
fn ctr_read_only_root_and_env_none(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let run = |name: &str, flags: &[&str], args: &[&str]| {
        let id = env.unique_id(name);
        let mut all = vec![BUSYBOX_MODULE];
        all.extend_from_slice(args);
        let out = env
            .ctr()
            .run_rm_flags(&env.runtime(), flags, image, &id, &all)?;
        env.assert_no_leaks(&id)?;
        Ok::<_, anyhow::Error>(out)
    };

    let out = run("grant-rw", &[], &["write", "/modules/grant.txt", "x"])?;
    ensure!(
        out.success(),
        "without annotations the guest writes /: {out}"
    );
    let out = run(
        "grant-ro",
        &["--annotation", "wasmpod.io/preopens=/:ro"],
        &["write", "/modules/grant.txt", "x"],
    )?;
    ensure!(!out.success(), "/:ro: the write succeeded: {out}");
    ensure!(out.stderr.contains(write_refused(env)), "/:ro: {out}");
    let out = run(
        "grant-ro-read",
        &["--annotation", "wasmpod.io/preopens=/:ro"],
        &["cat", "/etc/group"],
    )?;
    ensure!(
        out.success() && out.stdout.contains("root"),
        "/:ro: reading: {out}"
    );

    let flags = ["--env", "GRANT_TEST=visible"];
    let out = run("grant-env", &flags, &["env"])?;
    ensure!(
        out.success() && out.stdout.contains("GRANT_TEST=visible"),
        "env: {out}"
    );
    let out = run(
        "grant-env-none",
        &[&flags[..], &["--annotation", "wasmpod.io/env=none"]].concat(),
        &["env"],
    )?;
    ensure!(
        out.success() && out.stdout.trim().is_empty(),
        "wasmpod.io/env=none: the guest still has variables: {out}"
    );
    Ok(())
}

/// Each malformed form, and an unknown `wasmpod.io/` key, fails Create fast with an error
/// naming the annotation and the value, for wasm and native containers alike (a pod's
/// annotations reach every container of the pod). Nothing is left behind.
fn malformed_annotations_are_refused(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let forms: &[(&str, &str, &str)] = &[
        ("wasmpod.io/network", "", "empty"),
        ("wasmpod.io/network", "none,10.0.0.1", "cannot be combined"),
        ("wasmpod.io/network", "10.0.0.0/33", "neither an address"),
        ("wasmpod.io/network", "10.0.0.1/8", "host bits set"),
        ("wasmpod.io/network", "10.0.0.1:http", "is not a port"),
        ("wasmpod.io/network", "*.example.com:443", "wildcard names"),
        ("wasmpod.io/network", "[fd00::1", "without its ]"),
        ("wasmpod.io/network", "listen=99999", "is not a port"),
        ("wasmpod.io/outbound-http", "example.com", "no scheme"),
        (
            "wasmpod.io/outbound-http",
            "ftp://example.com",
            "is not http, https or *",
        ),
        (
            "wasmpod.io/outbound-http",
            "https://example.com/path",
            "without a path",
        ),
        (
            "wasmpod.io/outbound-http",
            "https://example.com:0",
            "is not a port",
        ),
        (
            "wasmpod.io/outbound-http",
            "https://foo.*.com",
            "is not a host name",
        ),
        ("wasmpod.io/preopens", "/data", "no :ro or :rw"),
        ("wasmpod.io/preopens", "/data:rx", "is not ro or rw"),
        ("wasmpod.io/preopens", "data:ro", "not an absolute path"),
        (
            "wasmpod.io/preopens",
            "/data/../etc:ro",
            "not a normal path",
        ),
        ("wasmpod.io/preopens", "/proc:ro", "never given to a guest"),
        ("wasmpod.io/preopens", "/a:ro,/a:rw", "listed twice"),
        ("wasmpod.io/env", "host", "unknown value"),
    ];
    let mut slowest = std::time::Duration::ZERO;
    for (n, (key, value, reason)) in forms.iter().enumerate() {
        let id = env.unique_id(&format!("grant-bad-{n}"));
        let annotation = format!("{key}={value}");
        let started = Instant::now();
        let out = env.ctr().run_rm_flags(
            &env.runtime(),
            &["--annotation", &annotation],
            image,
            &id,
            &[BUSYBOX_MODULE, "exit", "0"],
        )?;
        slowest = slowest.max(started.elapsed());
        ensure_refused(
            &out,
            &[&format!("annotation {key}={value:?}"), reason, "allowed:"],
        )
        .with_context(|| annotation.clone())?;
        env.assert_no_leaks(&id)?;
    }
    eprintln!("slowest refusal of a malformed annotation: {slowest:?}");

    for (name, args) in [
        ("grant-unknown-wasm", &[BUSYBOX_MODULE, "exit", "0"][..]),
        ("grant-unknown-native", &["true"][..]),
    ] {
        let id = env.unique_id(name);
        let out = env.ctr().run_rm_flags(
            &env.runtime(),
            &["--annotation", "wasmpod.io/netwrok=none"],
            image,
            &id,
            args,
        )?;
        ensure_refused(
            &out,
            &[
                "unknown annotation wasmpod.io/netwrok",
                "wasmpod.io/network",
            ],
        )?;
        env.assert_no_leaks(&id)?;
    }

    // A preopen the guest could not get is refused before the container exists.
    let id = env.unique_id("grant-missing-dir");
    let out = env.ctr().run_rm_flags(
        &env.runtime(),
        &["--annotation", "wasmpod.io/preopens=/no/such/dir:ro"],
        image,
        &id,
        &[BUSYBOX_MODULE, "exit", "0"],
    )?;
    ensure_refused(
        &out,
        &["wasmpod.io/preopens: /no/such/dir", "does not exist"],
    )?;
    env.assert_no_leaks(&id)
}

/// Engines without sockets or an HTTP client (wasmer, WasmEdge) refuse an allow-list they could
/// not enforce, and accept `none`; wasmtime accepts both.
fn allow_lists_an_engine_cannot_enforce_are_refused(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.busybox_image()?;
    let wasmtime = env.engine().name() == "wasmtime";
    for (annotation, needle) in [
        ("wasmpod.io/network=10.0.0.0/8", "gives guests no sockets"),
        (
            "wasmpod.io/outbound-http=https://example.com",
            "has no wasi:http client",
        ),
    ] {
        let id = env.unique_id("grant-engine");
        let out = env.ctr().run_rm_flags(
            &env.runtime(),
            &["--annotation", annotation],
            image,
            &id,
            &[BUSYBOX_MODULE, "exit", "0"],
        )?;
        if wasmtime {
            ensure!(out.success(), "{annotation} on wasmtime: {out}");
        } else {
            let key = annotation.split('=').next().unwrap_or(annotation);
            ensure_refused(&out, &[&format!("annotation {key}"), needle])?;
        }
        env.assert_no_leaks(&id)?;
    }
    let id = env.unique_id("grant-none");
    let out = env.ctr().run_rm_flags(
        &env.runtime(),
        &["--annotation", "wasmpod.io/network=none"],
        image,
        &id,
        &[BUSYBOX_MODULE, "exit", "0"],
    )?;
    ensure!(out.success(), "wasmpod.io/network=none: {out}");
    env.assert_no_leaks(&id)
}
