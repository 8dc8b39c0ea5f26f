//! Cases that run wasm modules (WASI preview1) through wasmpod's runtime, for the engine of
//! `E2E_ENGINE`.

use anyhow::{ensure, Result};
use wasmpod_e2e::{cases, Case, CmdOutput, Env, HELLO_TXT};

pub fn cases() -> Vec<Case> {
    cases![
        wasm_hello_args_and_env,
        wasm_exit_code_zero_and_three,
        wasm_trap_nonzero_with_message,
        wasm_stdin_echo,
        wasm_reads_rootfs_file,
        wasm_stdout_and_stderr,
        wasm_large_stdout,
        wasm_wat_module_and_export,
        wasm_cwd,
    ]
}

/// The pattern `testprog flood` repeats.
const FLOOD_PATTERN: &[u8; 16] = b"0123456789abcdef";

/// `ctr run --rm` of `args` in the wasm image, expecting exit code 0 and an empty stderr.
fn run_wasm_ok(env: &Env, id: &str, flags: &[&str], args: &[&str]) -> Result<CmdOutput> {
    let image = env.wasm_image()?;
    let out = env
        .ctr()
        .run_rm_flags(&env.runtime(), flags, image, id, args)?
        .ok()?;
    ensure!(out.stderr.is_empty(), "unexpected stderr: {out}");
    Ok(out)
}

/// hello.wasm prints its argv and environment: image env, `--env` and the arguments arrive.
fn wasm_hello_args_and_env(env: &Env) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id("wasm-hello");
    let out = run_wasm_ok(env, &id, &["--env", "FOO=bar"], &["/hello.wasm", "a", "b"])?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    ensure!(
        lines.first() == Some(&"hello from wasm"),
        "no greeting first: {out}"
    );
    let args: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("arg["))
        .collect();
    ensure!(
        args == ["arg[0]=/hello.wasm", "arg[1]=a", "arg[2]=b"],
        "unexpected arguments {args:?}: {out}"
    );
    // The image sets only GREETING, so containerd adds no default PATH: config.json's
    // process.env is exactly the image env plus `--env` (hello.wasm sorts by name).
    let vars: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("env "))
        .collect();
    ensure!(
        vars == ["env FOO=bar", "env GREETING=hi"],
        "unexpected environment {vars:?}: {out}"
    );
    ensure!(
        lines.len() == 1 + args.len() + vars.len(),
        "unexpected extra lines: {out}"
    );
    env.assert_no_leaks(&id)
}

fn wasm_exit_code_zero_and_three(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let zero = env.unique_id("wasm-exit0");
    env.ctr()
        .run_rm(
            &env.runtime(),
            image,
            &zero,
            &["/testprog.wasm", "exit", "0"],
        )?
        .expect_code(0)?;
    env.assert_no_leaks(&zero)?;

    let three = env.unique_id("wasm-exit3");
    env.ctr()
        .run_rm(
            &env.runtime(),
            image,
            &three,
            &["/testprog.wasm", "exit", "3"],
        )?
        .expect_code(3)?;
    env.assert_no_leaks(&three)
}

/// `unreachable` ends the task with 134 (like SIGABRT) and says why on stderr.
fn wasm_trap_nonzero_with_message(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("wasm-trap");
    let out = env
        .ctr()
        .run_rm(&env.runtime(), image, &id, &["/testprog.wasm", "trap"])?
        .expect_code(134)?;
    for needle in ["wasm trap", "unreachable"] {
        ensure!(
            out.stderr.contains(needle),
            "stderr does not mention `{needle}`: {out}"
        );
    }
    env.assert_no_leaks(&id)
}

fn wasm_stdin_echo(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("wasm-stdin");
    let input = "first line\nsecond line\nno newline at the end";
    let out = env
        .ctr()
        .run_rm_stdin(
            &env.runtime(),
            image,
            &id,
            &["/testprog.wasm", "echo-stdin"],
            input.as_bytes(),
        )?
        .ok()?;
    ensure!(out.stdout == input, "stdin was not echoed: {out}");
    env.assert_no_leaks(&id)
}

fn wasm_reads_rootfs_file(env: &Env) -> Result<()> {
    env.require_shim()?;
    let id = env.unique_id("wasm-cat");
    let out = run_wasm_ok(env, &id, &[], &["/testprog.wasm", "cat", "/data/hello.txt"])?;
    ensure!(out.stdout == HELLO_TXT, "unexpected file contents: {out}");
    env.assert_no_leaks(&id)
}

/// Without a tty ctr copies the task's stdout and stderr to its own stdout and stderr.
fn wasm_stdout_and_stderr(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("wasm-stderr");
    let msg = "this goes to stderr";
    let out = env
        .ctr()
        .run_rm(
            &env.runtime(),
            image,
            &id,
            &["/testprog.wasm", "stderr", msg],
        )?
        .ok()?;
    ensure!(
        out.stdout == "out\n",
        "stdout should hold only `out`: {out}"
    );
    ensure!(
        out.stderr == format!("{msg}\n"),
        "stderr should hold only the message: {out}"
    );
    env.assert_no_leaks(&id)
}

/// A megabyte through the stdout FIFO arrives complete and in order.
fn wasm_large_stdout(env: &Env) -> Result<()> {
    env.require_shim()?;
    let image = env.wasm_image()?;
    let id = env.unique_id("wasm-flood");
    const BYTES: usize = 1_000_000;
    let out = env
        .ctr()
        .run_rm(
            &env.runtime(),
            image,
            &id,
            &["/testprog.wasm", "flood", &BYTES.to_string()],
        )?
        .ok()?;
    // Do not print a megabyte on failure: describe the output instead.
    let summary = || {
        format!(
            "`{}` (status {:?}, {:.2?}): {} bytes of stdout, ending {:?}; stderr {:?}",
            out.command,
            out.status,
            out.elapsed,
            out.stdout.len(),
            tail(&out.stdout, 40),
            out.stderr
        )
    };
    let Some(body) = out.stdout.strip_suffix("flood done\n") else {
        anyhow::bail!("output does not end with `flood done`: {}", summary());
    };
    ensure!(
        body.len() == BYTES,
        "expected {BYTES} pattern bytes, got {}: {}",
        body.len(),
        summary()
    );
    if let Some(at) = body
        .bytes()
        .enumerate()
        .position(|(i, b)| b != FLOOD_PATTERN[i % FLOOD_PATTERN.len()])
    {
        anyhow::bail!(
            "pattern broken at byte {at} ({:?}...): {}",
            &body[at..(at + 32).min(body.len())],
            summary()
        );
    }
    ensure!(out.stderr.is_empty(), "unexpected stderr: {}", summary());
    env.assert_no_leaks(&id)
}

/// The last `n` bytes of `text` (or fewer, at a char boundary).
fn tail(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A text-format module runs `_start`; `#greet` runs the export `greet` instead.
fn wasm_wat_module_and_export(env: &Env) -> Result<()> {
    env.require_shim()?;
    let start = env.unique_id("wat-start");
    let out = run_wasm_ok(env, &start, &[], &["/greet.wat"])?;
    ensure!(out.stdout == "start called\n", "_start did not run: {out}");
    env.assert_no_leaks(&start)?;

    let greet = env.unique_id("wat-greet");
    let out = run_wasm_ok(env, &greet, &[], &["/greet.wat#greet"])?;
    ensure!(
        out.stdout == "hello from greet\n",
        "greet did not run: {out}"
    );
    env.assert_no_leaks(&greet)
}

/// The process cwd of the spec (`ctr run --cwd`) is the guest's current directory, and
/// relative paths resolve against it. Runs every check, then reports all that failed.
/// The spec's cwd is where a guest's relative paths resolve. WASI preview1 has no initial
/// working directory (wasi-libc starts `getcwd` at `/`), so `pwd` reports `/` even with
/// `--cwd`; the README documents this.
fn wasm_cwd(env: &Env) -> Result<()> {
    env.require_shim()?;
    let checks: [(&str, &[&str], &[&str], &str); 3] = [
        ("wasm-pwd", &[], &["/testprog.wasm", "pwd"], "/\n"),
        (
            "wasm-rel-default",
            &[],
            &["/testprog.wasm", "cat", "data/hello.txt"],
            HELLO_TXT,
        ),
        (
            "wasm-cwd-rel",
            &["--cwd", "/data"],
            &["/testprog.wasm", "cat", "hello.txt"],
            HELLO_TXT,
        ),
    ];
    let mut failures = Vec::new();
    for (name, flags, args, expected) in checks {
        let id = env.unique_id(name);
        let image = env.wasm_image()?;
        let out = env
            .ctr()
            .run_rm_flags(&env.runtime(), flags, image, &id, args)?;
        if !out.success() || out.stdout != expected || !out.stderr.is_empty() {
            failures.push(format!("expected stdout {expected:?}: {out}"));
        }
        env.assert_no_leaks(&id)?;
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
