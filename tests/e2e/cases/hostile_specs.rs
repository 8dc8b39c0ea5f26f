//! Hostile `config.json` content that Go (ctr, containerd) accepts but the OCI spec or wasmpod
//! refuses; the shim names the cause in Create, fast. (The unknown namespace type is in
//! `bad_input`; the size bound of config.json is a unit test, as containerd's own 16 MiB gRPC
//! limit stops a larger spec before it reaches a shim.)

use anyhow::Result;
use serde_json::{json, Value};
use wasmpod_e2e::{cases, Case, Env};

use crate::hostile_support::{assert_clean, ensure_refused, run_with_config};

pub fn cases() -> Vec<Case> {
    cases![
        hostile_spec_empty_args,
        hostile_spec_empty_arg0,
        hostile_spec_no_process,
        hostile_spec_unknown_capability,
    ]
}

/// A minimal spec whose process section is `process` (null: none at all).
fn spec(process: Value) -> Value {
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
    });
    if !process.is_null() {
        spec["process"] = process;
    }
    spec
}

fn process(args: Value) -> Value {
    json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/usr/bin:/bin"],
        "cwd": "/"
    })
}

fn refuse_spec(env: &Env, name: &str, spec: &Value, needles: &[&str]) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id(name);
    let out = run_with_config(env, &id, spec)?;
    ensure_refused(&out, needles)?;
    assert_clean(env, &id)
}

fn hostile_spec_empty_args(env: &Env) -> Result<()> {
    refuse_spec(
        env,
        "spec-noargs",
        &spec(process(json!([]))),
        &["process.args is empty"],
    )
}

fn hostile_spec_empty_arg0(env: &Env) -> Result<()> {
    refuse_spec(
        env,
        "spec-emptyarg",
        &spec(process(json!(["", "x"]))),
        &["process.args is empty"],
    )
}

fn hostile_spec_no_process(env: &Env) -> Result<()> {
    refuse_spec(
        env,
        "spec-noprocess",
        &spec(Value::Null),
        &["no process section"],
    )
}

/// A capability name the kernel does not have: a plain string to Go, an error to the OCI spec.
fn hostile_spec_unknown_capability(env: &Env) -> Result<()> {
    let mut process = process(json!(["/hello.wasm"]));
    process["capabilities"] = json!({"bounding": ["CAP_BOGUS"], "effective": ["CAP_BOGUS"]});
    refuse_spec(
        env,
        "spec-badcap",
        &spec(process),
        &["invalid config.json", "CAP_BOGUS"],
    )
}
