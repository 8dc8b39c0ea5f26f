//! WASI 0.2 command components (`wasi:cli/run`), built from the same sources as the preview1
//! fixtures for `wasm32-wasip2`. They run like modules on engines with component support, and
//! are refused at Create, naming the cause, on the others.

use anyhow::{ensure, Result};
use wasmpod_e2e::{cases, Case, Env, HELLO_TXT};

pub fn cases() -> Vec<Case> {
    let mut all = cases![component_hello_args_and_env];
    all.extend(cases![only_on(COMPONENT_ENGINES):
        component_exit_codes_trap_and_files,
        component_memory_limit_137,
    ]);
    all
}

/// Engines whose shim runs components (see `WasmEngine::SUPPORTS_COMPONENTS`).
const COMPONENT_ENGINES: &[&str] = &["wasmtime"];

fn supported(env: &Env) -> bool {
    COMPONENT_ENGINES.contains(&env.engine().name())
}

/// hello as a component prints its args and env. On an engine without component support,
/// Create fails fast with the cause and leaves nothing behind.
fn component_hello_args_and_env(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("component-hello");
    let args = ["/hello.component.wasm", "a", "b"];
    let out = env
        .ctr()
        .run_rm_flags(&env.runtime(), &["--env", "FOO=bar"], image, &id, &args)?;
    if !supported(env) {
        ensure!(
            !out.success() && out.stderr.contains("runs core modules only"),
            "a component on {} must be refused with the cause: {out}",
            env.engine().name()
        );
        return env.assert_no_leaks(&id);
    }
    let out = out.ok()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    ensure!(
        lines.first() == Some(&"hello from wasm"),
        "no greeting: {out}"
    );
    for want in [
        "arg[0]=/hello.component.wasm",
        "arg[1]=a",
        "arg[2]=b",
        "env FOO=bar",
        "env GREETING=hi",
    ] {
        ensure!(lines.contains(&want), "{want:?} missing: {out}");
    }
    env.assert_no_leaks(&id)
}

/// WASI 0.2's `wasi:cli/exit` carries success or failure only (Rust's std maps `exit(3)` to
/// failure), so exit(0) gives 0 and exit(3) gives 1; a trap gives 134 with the trap on stderr;
/// the component reads a file of the container's rootfs.
fn component_exit_codes_trap_and_files(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let run = |name: &str, args: &[&str]| {
        let id = env.unique_id(name);
        let mut argv = vec!["/testprog.component.wasm"];
        argv.extend_from_slice(args);
        env.ctr().run_rm(&env.runtime(), image, &id, &argv)
    };
    let out = run("component-exit0", &["exit", "0"])?;
    ensure!(out.status == Some(0), "exit 0: {out}");
    let out = run("component-exit3", &["exit", "3"])?;
    ensure!(out.status == Some(1), "exit 3 (failure in WASI 0.2): {out}");
    let out = run("component-trap", &["trap"])?;
    ensure!(
        out.status == Some(134) && out.stderr.contains("wasm trap"),
        "trap: {out}"
    );
    let out = run("component-cat", &["cat", "/data/hello.txt"])?.ok()?;
    ensure!(out.stdout == HELLO_TXT, "cat: {out}");
    Ok(())
}

/// The container's memory limit caps a component's memory like a module's: 137 and the cause.
fn component_memory_limit_137(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("component-mem");
    let out = env.ctr().run_rm_flags(
        &env.runtime(),
        &["--memory-limit", "67108864"],
        image,
        &id,
        &["/testprog.component.wasm", "grow-memory", "100"],
    )?;
    ensure!(
        out.status == Some(137) && out.stderr.contains("exceeded its memory limit"),
        "a component growing past its limit must end with 137 and the cause: {out}"
    );
    env.assert_no_leaks(&id)
}
