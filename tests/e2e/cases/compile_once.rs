//! Compiling no more than needed (issue "Speed", §2): shims that miss the same cache entry at
//! once wait for the first one's compile (an in-flight lock in the cache directory) instead of
//! each compiling the module, and a module that can never start is refused before its compile.

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_e2e::images::import;
use wasmpod_e2e::wasm_gen::{many_functions_module, many_functions_module_with_entry};
use wasmpod_e2e::{cases, Case, Env};
use wasmpod_oci_image::ImageBuilder;

use crate::hostile_support::ensure_refused;
use crate::support::shim_log_field;

pub fn cases() -> Vec<Case> {
    cases![
        ten_shims_compile_one_module_once,
        a_module_without_its_entry_is_refused_before_compiling
    ]
}

/// Imports an image named `name` whose only file is `module` at `/app.wasm`.
fn import_module(env: &Env, name: &str, module: Vec<u8>) -> Result<String> {
    let image = ImageBuilder::new(&format!("docker.io/wasmpod/{name}:latest"))
        .entrypoint(vec!["/app.wasm".to_string()])
        .add_file("/app.wasm", module, 0o755);
    let dir = tempfile::Builder::new()
        .prefix("image-")
        .tempdir_in(env.containerd().base())?;
    import(env.ctr(), &image, &dir.path().join("image.tar"))
}

/// A reactor (`_initialize`, no `_start`) that takes tens of seconds to compile is refused at
/// once, naming the missing export; with `#_initialize` as its entry it would be compiled.
fn a_module_without_its_entry_is_refused_before_compiling(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = import_module(
        env,
        "reactor",
        many_functions_module_with_entry(60_000, 7, "_initialize"),
    )?;
    let id = env.unique_id("reactor");
    let out = env
        .ctr()
        .run_rm(&env.runtime(), &image, &id, &["/app.wasm"])?;
    ensure_refused(
        &out,
        &["/app.wasm: export `_start` not found in module (function exports: _initialize)"],
    )?;
    env.assert_no_leaks(&id)
}

const SHIMS: usize = 10;

/// Ten `ctr run --rm` of one uncached module at once, each container on a shim of its own: all
/// ten run, one compiles the module, the nine others load its entry.
fn ten_shims_compile_one_module_once(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = import_module(env, "compile-once", many_functions_module(3_000, 4242))?;
    let ids: Vec<String> = (0..SHIMS)
        .map(|n| env.unique_id(&format!("once-{n}")))
        .collect();
    let outs = std::thread::scope(|scope| {
        let runs: Vec<_> = ids
            .iter()
            .map(|id| {
                let image = &image;
                scope.spawn(move || {
                    env.ctr()
                        .clone()
                        .with_timeout(Duration::from_secs(180))
                        .run_rm(&env.runtime(), image, id, &["/app.wasm"])
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| {
                r.join()
                    .map_err(|_| anyhow::anyhow!("ctr thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
    })?;
    for out in &outs {
        ensure!(out.success(), "a container did not run: {out}");
    }
    let verdicts = ids
        .iter()
        .map(|id| shim_log_field(env, "module prepared", id, "cache"))
        .collect::<Result<Vec<_>>>()?;
    let compiled = verdicts.iter().filter(|v| v.starts_with("miss")).count();
    ensure!(
        compiled == 1,
        "{compiled} of {SHIMS} shims compiled the module; the cache verdicts: {verdicts:?}"
    );
    for id in &ids {
        env.assert_no_leaks(id)?;
    }
    Ok(())
}
