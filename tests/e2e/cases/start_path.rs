//! The start path: the shim's zygote keeps the engine and recently used modules loaded, so a
//! later container of the same shim (a pod's next container, a restart) forks with the module
//! already in memory instead of loading it again.

use anyhow::{ensure, Result};
use wasmpod_e2e::cri::pod::container_config;
use wasmpod_e2e::cri::Pod;
use wasmpod_e2e::{cases, Case, Env, HELLO_TXT, WASM_IMAGE};

use crate::cri_support::*;
use crate::support::shim_log_field;

pub fn cases() -> Vec<Case> {
    cases![cri_pod_containers_reuse_the_prepared_module]
}

/// What the shim logged about the module of container `id`: `loaded` or `reused`.
fn zygote_verdict(env: &Env, id: &str) -> Result<String> {
    shim_log_field(
        env,
        "module ready before the container process",
        id,
        "zygote",
    )
}

/// Three wasm containers in one pod (one shim): the first loads testprog, the second reuses it
/// with its own args and still gets its own output, the third loads another module.
fn cri_pod_containers_reuse_the_prepared_module(env: &Env) -> Result<()> {
    env.require_shim()?;
    let cri = env.cri()?;
    let mut pod = Pod::run(cri, "reuse", env.cri_handler(), &env.pod_logs_root())?;

    let first = pod.start(&container_config(
        "first",
        WASM_IMAGE,
        &["/testprog.wasm", "cat", "/data/hello.txt"],
    ))?;
    expect_exit(&wait_exited(cri, &first)?, 0, "Completed")?;
    let second = pod.start(&container_config(
        "second",
        WASM_IMAGE,
        &["/testprog.wasm", "stderr", "second-run"],
    ))?;
    expect_exit(&wait_exited(cri, &second)?, 0, "Completed")?;
    let other = pod.start(&container_config("other", WASM_IMAGE, &["/hello.wasm"]))?;
    expect_exit(&wait_exited(cri, &other)?, 0, "Completed")?;

    let verdicts = [
        zygote_verdict(env, &first)?,
        zygote_verdict(env, &second)?,
        zygote_verdict(env, &other)?,
    ];
    ensure!(
        verdicts[0].starts_with("loaded")
            && verdicts[1].starts_with("reused")
            && verdicts[2].starts_with("loaded"),
        "zygote verdicts first/second/other: {verdicts:?}"
    );
    let (stdout, _) = read_log(&pod.log_path("first"), HELLO_TXT.trim())?;
    ensure!(stdout.contains(HELLO_TXT.trim()), "first: {stdout:?}");
    let (stdout, stderr) = read_log(&pod.log_path("second"), "second-run")?;
    ensure!(
        stderr.contains("second-run") && stdout.contains("out") && !stdout.contains("hello"),
        "second: stdout {stdout:?}, stderr {stderr:?}"
    );

    remove_and_assert_gone(env, &mut pod, &[&first, &second, &other])
}
