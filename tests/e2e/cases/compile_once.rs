//! One compile per module on the node (issue "Speed", §2): shims that miss the same cache entry
//! at once wait for the first one's compile (an in-flight lock in the cache directory) instead
//! of each compiling the module.

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_e2e::images::import;
use wasmpod_e2e::wasm_gen::many_functions_module;
use wasmpod_e2e::{cases, Case, Env};
use wasmpod_oci_image::ImageBuilder;

use crate::support::shim_log_field;

pub fn cases() -> Vec<Case> {
    cases![ten_shims_compile_one_module_once]
}

const SHIMS: usize = 10;

/// Ten `ctr run --rm` of one uncached module at once, each container on a shim of its own: all
/// ten run, one compiles the module, the nine others load its entry.
fn ten_shims_compile_one_module_once(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = ImageBuilder::new("docker.io/wasmpod/compile-once:latest")
        .entrypoint(vec!["/app.wasm".to_string()])
        .add_file("/app.wasm", many_functions_module(3_000, 4242), 0o755);
    let dir = tempfile::Builder::new()
        .prefix("image-")
        .tempdir_in(env.containerd().base())?;
    let image = import(env.ctr(), &image, &dir.path().join("image.tar"))?;
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
