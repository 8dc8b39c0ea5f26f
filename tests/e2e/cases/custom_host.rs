//! The worked example `examples/custom-host/`: its own shim, `containerd-shim-customhost-v1`
//! (runtime `io.containerd.customhost.v1`), runs a module that imports the example's host
//! function. The case does not depend on `E2E_ENGINE` (the example is always wasmtime), so it
//! runs once per engine run of the suite; the refusal case uses the run's engine.

use anyhow::{ensure, Result};
use wasmpod_e2e::{cases, paths, Case, Env};

pub fn cases() -> Vec<Case> {
    cases![
        custom_host_function_reaches_stderr,
        custom_host_import_unknown_to_the_plain_engine,
    ]
}

const RUNTIME: &str = "io.containerd.customhost.v1";
const SHIM: &str = "containerd-shim-customhost-v1";
const GUEST: &str = "/custom-log.wat";

/// The guest's `wasmpod_demo::log` call arrives on stderr as the example formats it, and its
/// WASI output on stdout: host functions come on top of WASI, not instead of it.
fn custom_host_function_reaches_stderr(env: &Env) -> Result<()> {
    paths::require_shim_in(env.shim_dir(), SHIM)?;
    let image = env.wasm_image()?;
    let id = env.unique_id("custom-host");
    let out = env.ctr().run_rm(RUNTIME, image, &id, &[GUEST])?.ok()?;
    ensure!(
        out.stderr == "[wasmpod_demo] hello from the guest\n",
        "the host function's line is not stderr: {out}"
    );
    ensure!(
        out.stdout == "hello through WASI\n",
        "the WASI output is not stdout: {out}"
    );
    env.assert_no_leaks(&id)
}

/// The same module on the run's own engine fails naming the import: the function really comes
/// from the example's shim.
fn custom_host_import_unknown_to_the_plain_engine(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("custom-host-plain");
    let out = env.ctr().run_rm(&env.runtime(), image, &id, &[GUEST])?;
    ensure!(!out.success(), "the plain engine ran the module: {out}");
    ensure!(
        out.stderr.contains("wasmpod_demo") && out.stderr.contains("log"),
        "stderr does not name the missing import wasmpod_demo::log: {out}"
    );
    ensure!(
        !out.stderr.contains("[wasmpod_demo] "),
        "the plain engine logged through the host function: {out}"
    );
    env.assert_no_leaks(&id)
}
