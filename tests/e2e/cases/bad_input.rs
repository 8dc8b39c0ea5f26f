//! Cases with input the shim must refuse: each fails fast, names the cause on ctr's stderr,
//! and leaves nothing behind.

use anyhow::{ensure, Result};
use serde_json::json;
use wasmpod_e2e::{cases, Case, Env};

use crate::hostile_support::{ensure_refused, run_with_config};

pub fn cases() -> Vec<Case> {
    cases![
        bad_missing_module,
        bad_neither_elf_script_nor_wasm,
        bad_wasm_magic,
        bad_truncated_wasm,
        bad_missing_export,
        bad_config_json_namespace,
    ]
}

/// `ctr run --rm` of `args` in the wasm image must be refused with all of `needles`.
fn refuse_in_wasm_image(env: &Env, name: &str, args: &[&str], needles: &[&str]) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id(name);
    let out = env.ctr().run_rm(&env.runtime(), image, &id, args)?;
    ensure_refused(&out, needles)?;
    env.assert_no_leaks(&id)
}

fn bad_missing_module(env: &Env) -> Result<()> {
    refuse_in_wasm_image(
        env,
        "bad-missing",
        &["/nope.wasm"],
        &["\"/nope.wasm\" not found in rootfs"],
    )
}

fn bad_neither_elf_script_nor_wasm(env: &Env) -> Result<()> {
    refuse_in_wasm_image(
        env,
        "bad-data",
        &["/bad/data.txt"],
        &["/bad/data.txt", "not ELF, script or wasm"],
    )
}

fn bad_wasm_magic(env: &Env) -> Result<()> {
    refuse_in_wasm_image(
        env,
        "bad-magic",
        &["/bad/not-wasm.wasm"],
        &["/bad/not-wasm.wasm", "bad magic"],
    )
}

fn bad_truncated_wasm(env: &Env) -> Result<()> {
    refuse_in_wasm_image(
        env,
        "bad-truncated",
        &["/bad/truncated.wasm"],
        &["invalid wasm module"],
    )
}

/// The error names the missing export and then lists the ones the module has.
fn bad_missing_export(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("bad-export");
    let out = env
        .ctr()
        .run_rm(&env.runtime(), image, &id, &["/greet.wat#nope"])?;
    let missing = "export `nope` not found";
    ensure_refused(&out, &[missing])?;
    // `greet` also occurs in the module's path: look for it after the message only.
    let after = out.stderr.split_once(missing).map_or("", |(_, rest)| rest);
    ensure!(
        after.contains("greet"),
        "the error does not list the export `greet`: {out}"
    );
    env.assert_no_leaks(&id)
}

/// A config.json that Go (containerd, ctr) accepts but the OCI spec forbids: the namespace
/// type `bogus` (a plain string to Go). The shim must name the file and the bad value.
fn bad_config_json_namespace(env: &Env) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id("bad-config");
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/hello.wasm"],
            "env": ["PATH=/usr/bin:/bin"],
            "cwd": "/"
        },
        "root": {"path": "rootfs"},
        "linux": {
            "namespaces": [
                {"type": "mount"},
                {"type": "pid"},
                {"type": "bogus"}
            ]
        }
    });
    let out = run_with_config(env, &id, &spec)?;
    ensure_refused(&out, &["config.json", "bogus"])?;
    env.assert_no_leaks(&id)
}
