//! OCI wasm images: the wasm to run is a layer of the image (`application/wasm`, a component
//! layer, a CNCF wasm artifact), not a file of the rootfs. The shim reads it from containerd's
//! content store. Images are built with `wasmpod_oci_image::WasmImageBuilder` and imported
//! with `ctr images import --all-platforms`; each case imports its own image name, so cases
//! running side by side never race on one image.

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_e2e::cri::pod::container_config;
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::images::{self, OciWasm};
use wasmpod_e2e::leaks::poll;
use wasmpod_e2e::{cases, Case, CmdOutput, Ctr, Env, HELLO_TXT};

use crate::cri_support::{expect_exit, read_log, remove_and_assert_gone, wait_exited};
use crate::hostile_support::ensure_failed_fast;

pub fn cases() -> Vec<Case> {
    cases![
        oci_module_layer_runs,
        oci_module_with_data_files_and_cache_hit,
        oci_component_layer,
        oci_artifact_runs,
        oci_two_modules_chosen_by_title,
        oci_layer_that_is_not_wasm_is_refused,
        oci_default_import_names_the_missing_flag,
        oci_removed_image_is_a_clear_error,
        oci_cri_pod_runs_wasm_layers,
    ]
}

/// Engines whose shim runs components (see `WasmEngine::SUPPORTS_COMPONENTS`).
const COMPONENT_ENGINES: &[&str] = &["wasmtime"];

/// Builds `kind` as `docker.io/wasmpod/oci-<tag>:latest` and imports it into `ctr`'s namespace.
fn import(env: &Env, ctr: &Ctr, kind: OciWasm, tag: &str) -> Result<String> {
    let name = format!("docker.io/wasmpod/oci-{tag}:latest");
    let image = images::oci_image(kind, &name, env.fixtures_dir())?;
    let dir = env.containerd().base().join("oci-images");
    std::fs::create_dir_all(&dir)?;
    let tar = dir.join(format!("{tag}.tar"));
    let unpack = kind != OciWasm::ModuleNoHostEntry;
    images::import_oci_wasm(ctr, &image, &tar, unpack)
}

/// The first line of containerd.log (where the shim's log goes) about container `id` that
/// contains `needle`; waits briefly, as the log is copied asynchronously.
fn shim_log_line(env: &Env, id: &str, needle: &str) -> Result<String> {
    let what = format!("a line with {needle:?} for {id} in containerd.log");
    poll(Duration::from_secs(5), &what, || {
        let log = std::fs::read_to_string(env.containerd().log_path())?;
        Ok(log
            .lines()
            .find(|l| l.contains(needle) && l.contains(id))
            .map(str::to_string))
    })
}

/// Checks `out` failed fast in Create, naming every `needle`.
fn ensure_refused(out: &CmdOutput, needles: &[&str]) -> Result<()> {
    ensure_failed_fast(out, "failed to create shim task", needles)
}

/// A module-only image runs its layer with the image's entrypoint and env; argv[0] is the
/// entrypoint, as for a module in the rootfs; the shim logs where the module came from.
fn oci_module_layer_runs(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = import(env, env.ctr(), OciWasm::Module, "module")?;
    let id = env.unique_id("oci-module");
    let out = env.ctr().run_rm(&env.runtime(), &image, &id, &[])?.ok()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    for want in ["hello from wasm", "arg[0]=/hello.wasm", "env GREETING=hi"] {
        ensure!(lines.contains(&want), "{want:?} missing: {out}");
    }
    let read = shim_log_line(env, &id, "wasm layer read from containerd's content store")?;
    ensure!(read.contains("application/wasm"), "{read}");
    let decision = shim_log_line(env, &id, "workload decision")?;
    ensure!(
        decision.contains("reason=image layer sha256:") && decision.contains("core module"),
        "{decision}"
    );
    env.assert_no_leaks(&id)
}

/// The guest reads a data file of the image's tar layer (the rootfs) while the module comes
/// from the wasm layer; args after the image's entrypoint reach the guest; the second start
/// finds the module in the node's compile cache.
fn oci_module_with_data_files_and_cache_hit(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = import(env, env.ctr(), OciWasm::ModuleAndData, "data")?;
    let first = env.unique_id("oci-data");
    let out = env
        .ctr()
        .run_rm(&env.runtime(), &image, &first, &[])?
        .ok()?;
    ensure!(
        out.stdout == HELLO_TXT,
        "the data file, from the guest: {out}"
    );

    let second = env.unique_id("oci-data-again");
    let args = ["/testprog.wasm", "exit", "7"];
    let out = env.ctr().run_rm(&env.runtime(), &image, &second, &args)?;
    ensure!(
        out.status == Some(7),
        "exit 7 from the layer's module: {out}"
    );
    let prepared = shim_log_line(env, &second, "module prepared")?;
    ensure!(
        prepared.contains("cache=\\\"hit") || prepared.contains("cache=hit"),
        "second start must hit the compile cache: {prepared}"
    );
    env.assert_no_leaks(&first)?;
    env.assert_no_leaks(&second)
}

/// A component layer runs on engines with component support and is refused at Create, with
/// the cause and nothing left behind, on the others.
fn oci_component_layer(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = import(env, env.ctr(), OciWasm::Component, "component")?;
    let id = env.unique_id("oci-component");
    let out = env.ctr().run_rm(&env.runtime(), &image, &id, &[])?;
    if COMPONENT_ENGINES.contains(&env.engine().name()) {
        let out = out.ok()?;
        let lines: Vec<&str> = out.stdout.lines().collect();
        for want in ["hello from wasm", "arg[0]=/hello.component.wasm"] {
            ensure!(lines.contains(&want), "{want:?} missing: {out}");
        }
        let decision = shim_log_line(env, &id, "workload decision")?;
        ensure!(decision.contains("(component)"), "{decision}");
    } else {
        ensure_refused(&out, &["runs core modules only"])?;
    }
    env.assert_no_leaks(&id)
}

/// A CNCF wasm artifact (config `application/vnd.wasm.config.v0+json`) runs like the image.
fn oci_artifact_runs(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = import(env, env.ctr(), OciWasm::Artifact, "artifact")?;
    let id = env.unique_id("oci-artifact");
    let out = env
        .ctr()
        .run_rm(&env.runtime(), &image, &id, &["/hello.wasm", "x"])?;
    let out = out.ok()?;
    ensure!(
        out.stdout.lines().any(|l| l == "arg[1]=x"),
        "artifact module output: {out}"
    );
    env.assert_no_leaks(&id)
}

/// With several wasm layers, args[0] picks one by its title; a name that matches none is
/// refused with the titles it could have used.
fn oci_two_modules_chosen_by_title(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = import(env, env.ctr(), OciWasm::TwoModules, "two")?;
    let runtime = env.runtime();
    let id = env.unique_id("oci-two-testprog");
    let out = env
        .ctr()
        .run_rm(&runtime, &image, &id, &["/testprog.wasm", "exit", "3"])?;
    ensure!(out.status == Some(3), "testprog.wasm chosen: {out}");
    let id = env.unique_id("oci-two-hello");
    let out = env
        .ctr()
        .run_rm(&runtime, &image, &id, &["/hello.wasm"])?
        .ok()?;
    ensure!(
        out.stdout.starts_with("hello from wasm"),
        "hello.wasm chosen: {out}"
    );
    let id = env.unique_id("oci-two-none");
    let out = env.ctr().run_rm(&runtime, &image, &id, &["/other.wasm"])?;
    ensure_refused(
        &out,
        &["2 wasm layers (hello.wasm, testprog.wasm)", "/other.wasm"],
    )?;
    env.assert_no_leaks(&id)
}

/// An `application/wasm` layer holding text fails Create fast, naming the layer and its first
/// bytes, and leaves nothing behind.
fn oci_layer_that_is_not_wasm_is_refused(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = import(env, env.ctr(), OciWasm::NotWasm, "not-wasm")?;
    let id = env.unique_id("oci-not-wasm");
    let out = env.ctr().run_rm(&env.runtime(), &image, &id, &[])?;
    ensure_refused(
        &out,
        &[
            "image layer sha256:",
            "application/wasm, broken.wasm",
            "is not wasm: first bytes 74 68 69 73",
        ],
    )?;
    env.assert_no_leaks(&id)
}

/// `ctr images import` without `--all-platforms` keeps only the host entry: the wasm manifest
/// is ingested but nothing references it, so containerd's next garbage collection removes it
/// (forced here by a synchronous image removal). Create then says so and how to import.
fn oci_default_import_names_the_missing_flag(env: &Env) -> Result<()> {
    env.require_shim()?;
    let name = "docker.io/wasmpod/oci-default-import:latest";
    // Its own env, so its wasm manifest differs from every other image's.
    let image = images::oci_image(OciWasm::Module, name, env.fixtures_dir())?
        .env(vec!["IMPORTED=without --all-platforms".to_string()]);
    let dir = env.containerd().base().join("oci-images");
    std::fs::create_dir_all(&dir)?;
    let tar = dir.join("default-import.tar");
    image.write_tar(&tar)?;
    let ctr = env.ctr();
    ctr.import(&tar)?.ok()?;
    let scratch = format!("{name}-gc");
    ctr.run(&["images", "tag", name, &scratch])?.ok()?;
    ctr.run(&["images", "rm", "--sync", &scratch])?.ok()?;
    let id = env.unique_id("oci-default-import");
    let out = env.ctr().run_rm(&env.runtime(), name, &id, &[])?;
    ensure_refused(
        &out,
        &[
            "is not in containerd's content store",
            "ctr images import --all-platforms",
        ],
    )?;
    env.assert_no_leaks(&id)
}

/// A container whose image was removed before its task was created: Create names the image.
fn oci_removed_image_is_a_clear_error(env: &Env) -> Result<()> {
    env.require_shim()?;
    let ctr = env.ctr();
    let image = import(env, ctr, OciWasm::Module, "removed")?;
    let id = env.unique_id("oci-removed");
    ctr.run(&[
        "container",
        "create",
        "--runtime",
        &env.runtime(),
        &image,
        &id,
    ])?
    .ok()?;
    ctr.run(&["images", "rm", &image])?.ok()?;
    let out = ctr.run(&["task", "start", &id])?;
    let deleted = ctr.container_delete(&id);
    ensure_refused(
        &out,
        &[&format!(
            "image {image} of container {id} is not in containerd namespace default"
        )],
    )?;
    deleted?.ok()?;
    env.assert_no_leaks(&id)
}

/// Through CRI (kubelet's calls): a plain wasm manifest (no host entry, which `ctr run` on
/// containerd 1.6 cannot unpack) and an image with a data layer both run in one pod.
fn oci_cri_pod_runs_wasm_layers(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let ctr = env.cri_ctr();
    let plain = import(env, &ctr, OciWasm::ModuleNoHostEntry, "cri-plain")?;
    let data = import(env, &ctr, OciWasm::ModuleAndData, "cri-data")?;
    for image in [&plain, &data] {
        let what = format!("the CRI plugin to list {image} after its import");
        poll(Duration::from_secs(10), &what, || {
            Ok(cri.has_image(image)?.then_some(()))
        })?;
    }
    let mut pod = Pod::run(cri, "oci-wasm", env.cri_handler(), &env.pod_logs_root())?;
    let hello = pod.start(&container_config("plain", &plain, &[]))?;
    let reader = pod.start(&container_config("data", &data, &[]))?;
    expect_exit(&wait_exited(cri, &hello)?, 0, "Completed")?;
    expect_exit(&wait_exited(cri, &reader)?, 0, "Completed")?;
    let (stdout, _) = read_log(&pod.log_path("plain"), "hello from wasm")?;
    ensure!(
        stdout.contains("hello from wasm\n") && stdout.contains("arg[0]=/hello.wasm"),
        "plain wasm manifest through CRI: {stdout:?}"
    );
    let (stdout, _) = read_log(&pod.log_path("data"), HELLO_TXT)?;
    ensure!(stdout == HELLO_TXT, "data layer through CRI: {stdout:?}");
    remove_and_assert_gone(env, &mut pod, &[&hello, &reader])
}
