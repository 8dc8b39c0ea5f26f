//! Hostile wasm modules, generated here byte by byte (a small encoder below): deep nesting,
//! 100k exports with a wrong `#func`, a missing import, a trapping start function, a function
//! count past the format's limit. Whichever process compiles them, the user gets the cause in
//! words: from Create when the module cannot be prepared, on the container's stderr with a
//! non-zero exit when it compiles but cannot be instantiated. The shim keeps serving.

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_e2e::{cases, Case, CmdOutput, Env};

use crate::hostile_support::{
    assert_clean, ensure_failed_within, run_rm_on_rootfs, HostRootfs, CREATE_FAILED,
};

pub fn cases() -> Vec<Case> {
    cases![
        hostile_module_deep_nesting,
        hostile_module_100k_exports_wrong_func,
        hostile_module_missing_import,
        hostile_module_trapping_start,
        hostile_module_function_count_over_limit,
    ]
}

/// How long a case that compiles its module may take end to end: these modules take a
/// second or two to compile or reject in a debug shim on 2 cores (the shim's compile limit is
/// far above).
const COMPILE_CASE_LIMIT: Duration = Duration::from_secs(30);

/// Refused by Create (preparing the module), naming every `needle`.
fn ensure_refused(out: &CmdOutput, needles: &[&str]) -> Result<()> {
    ensure_failed_within(out, COMPILE_CASE_LIMIT, CREATE_FAILED, needles)
}

/// A minimal wasm binary encoder over the harness's `wasm_gen`: just what these modules need.
mod enc {
    use wasmpod_e2e::wasm_gen;

    pub fn leb(n: u64, out: &mut Vec<u8>) {
        wasm_gen::leb(out, n);
    }

    pub fn name(s: &str, out: &mut Vec<u8>) {
        leb(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }

    /// A vector: its count, then `items` already encoded.
    pub fn vec(count: usize, items: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        leb(count as u64, &mut out);
        out.extend_from_slice(items);
        out
    }

    pub struct Module {
        bytes: Vec<u8>,
    }

    impl Module {
        pub fn new() -> Self {
            Module {
                bytes: wasm_gen::header(),
            }
        }

        pub fn section(mut self, id: u8, payload: &[u8]) -> Self {
            wasm_gen::section(&mut self.bytes, id, payload);
            self
        }

        /// Type 0 is `[] -> []`, the only one.
        pub fn one_type(self) -> Self {
            self.section(1, &vec(1, &[0x60, 0x00, 0x00]))
        }

        /// `count` functions of type 0.
        pub fn functions(self, count: usize) -> Self {
            self.section(3, &vec(count, &vec![0u8; count]))
        }

        /// One page of memory (WASI engines look for an exported `memory`).
        pub fn memory(self) -> Self {
            self.section(5, &vec(1, &[0x00, 0x01]))
        }

        /// `(name, kind, index)` exports; kind 0 = function, 2 = memory.
        pub fn exports(self, exports: &[(String, u8, u32)]) -> Self {
            let mut items = Vec::new();
            for (export, kind, index) in exports {
                name(export, &mut items);
                items.push(*kind);
                leb(u64::from(*index), &mut items);
            }
            self.section(7, &vec(exports.len(), &items))
        }

        pub fn start(self, func: u32) -> Self {
            let mut payload = Vec::new();
            leb(u64::from(func), &mut payload);
            self.section(8, &payload)
        }

        /// Function bodies without locals; each `code` must end with `end` (0x0b).
        pub fn code(self, bodies: &[Vec<u8>]) -> Self {
            let mut items = Vec::new();
            for code in bodies {
                let mut body = vec![0x00]; // no locals
                body.extend_from_slice(code);
                leb(body.len() as u64, &mut items);
                items.extend_from_slice(&body);
            }
            self.section(10, &vec(bodies.len(), &items))
        }

        pub fn finish(self) -> Vec<u8> {
            self.bytes
        }
    }

    pub const END: u8 = 0x0b;
    pub const UNREACHABLE: u8 = 0x00;

    pub fn standard_exports() -> Vec<(String, u8, u32)> {
        vec![("_start".to_string(), 0, 0), ("memory".to_string(), 2, 0)]
    }
}

use enc::{Module, END, UNREACHABLE};

/// Puts `module` at `/m.wasm` of a fresh rootfs and runs `arg0` (`/m.wasm` or `/m.wasm#f`).
fn run_module(env: &Env, name: &str, module: &[u8], arg0: &str) -> Result<(String, CmdOutput)> {
    env.require_shim()?;
    let rootfs = HostRootfs::new(env, name)?;
    rootfs.file("m.wasm", module)?;
    let id = env.unique_id(name);
    let out = run_rm_on_rootfs(env, &rootfs, &[], &id, &[arg0])?;
    ensure!(
        !out.timed_out && out.elapsed < COMPILE_CASE_LIMIT,
        "took {:.2?} (allowed {COMPILE_CASE_LIMIT:?}): {out}",
        out.elapsed
    );
    Ok((id, out))
}

/// The module compiled and ran, and failed at instantiation: non-zero exit, `needles` on stderr.
fn ensure_failed_at_run_time(out: &CmdOutput, needles: &[&str]) -> Result<()> {
    ensure!(
        !out.stderr.contains("failed to create shim task"),
        "refused by Create, expected a run-time failure: {out}"
    );
    ensure!(
        out.status.is_some_and(|c| c != 0),
        "exit status must be non-zero: {out}"
    );
    for needle in needles {
        ensure!(
            out.stderr.contains(needle),
            "stderr does not name `{needle}`: {out}"
        );
    }
    Ok(())
}

/// `_start` is 100k nested blocks around `unreachable`: either an engine limit refuses it in
/// Create (naming it), or it compiles and traps at `unreachable`. It must never take the shim
/// down (a recursive compiler pass would overflow its stack).
fn hostile_module_deep_nesting(env: &Env) -> Result<()> {
    const DEPTH: usize = 100_000;
    let mut code = Vec::with_capacity(DEPTH * 3 + 2);
    for _ in 0..DEPTH {
        code.extend_from_slice(&[0x02, 0x40]); // block (empty type)
    }
    code.push(UNREACHABLE);
    code.extend(std::iter::repeat_n(END, DEPTH + 1));
    let module = Module::new()
        .one_type()
        .functions(1)
        .memory()
        .exports(&enc::standard_exports())
        .code(&[code])
        .finish();
    let (id, out) = run_module(env, "deep", &module, "/m.wasm")?;
    if out.stderr.contains("failed to create shim task") {
        ensure!(
            out.stderr.contains("/m.wasm") && out.stderr.contains("nest"),
            "refused without naming the nesting: {out}"
        );
    } else {
        ensure_failed_at_run_time(&out, &["unreachable"])?;
    }
    assert_clean(env, &id)
}

/// 100k exports and `#nope`: the missing export is named, and the message stays short.
fn hostile_module_100k_exports_wrong_func(env: &Env) -> Result<()> {
    let mut exports = enc::standard_exports();
    exports.extend((0..100_000).map(|n| (format!("f{n}"), 0u8, 0u32)));
    let module = Module::new()
        .one_type()
        .functions(1)
        .memory()
        .exports(&exports)
        .code(&[vec![END]])
        .finish();
    let (id, out) = run_module(env, "exports", &module, "/m.wasm#nope")?;
    ensure!(
        out.stderr.len() < 4 << 10,
        "the error is {} bytes long (it lists every export?); it must stay short: {:?}…",
        out.stderr.len(),
        out.stderr.get(..400).unwrap_or(&out.stderr)
    );
    ensure_refused(&out, &["export `nope` not found", "f0, f1", "more"])?;
    assert_clean(env, &id)
}

/// `(import "env" "nope" (func))`: compiles; instantiation fails naming the import.
fn hostile_module_missing_import(env: &Env) -> Result<()> {
    let mut imports = Vec::new();
    enc::name("env", &mut imports);
    enc::name("nope", &mut imports);
    imports.extend_from_slice(&[0x00, 0x00]); // func of type 0
                                              // Function index 0 is the import; `_start` is function 1.
    let exports = vec![("_start".to_string(), 0, 1), ("memory".to_string(), 2, 0)];
    let module = Module::new()
        .one_type()
        .section(2, &enc::vec(1, &imports))
        .functions(1)
        .memory()
        .exports(&exports)
        .code(&[vec![END]])
        .finish();
    let (id, out) = run_module(env, "import", &module, "/m.wasm")?;
    if out.stderr.contains("failed to create shim task") {
        // An engine that resolves imports while preparing: fast, and naming it.
        ensure_refused(&out, &["env", "nope"])?;
    } else {
        ensure_failed_at_run_time(&out, &["env", "nope", "import"])?;
    }
    assert_clean(env, &id)
}

/// A start function that traps: instantiation fails with the trap on stderr.
fn hostile_module_trapping_start(env: &Env) -> Result<()> {
    let module = Module::new()
        .one_type()
        .functions(2)
        .memory()
        .exports(&enc::standard_exports())
        .start(1)
        .code(&[vec![END], vec![UNREACHABLE, END]])
        .finish();
    let (id, out) = run_module(env, "trapstart", &module, "/m.wasm")?;
    ensure_failed_at_run_time(&out, &["unreachable"])?;
    assert_clean(env, &id)
}

/// A function section declaring 1,000,001 functions, one more than wasm engines accept:
/// refused by validation before anything is compiled.
fn hostile_module_function_count_over_limit(env: &Env) -> Result<()> {
    let module = Module::new()
        .one_type()
        .functions(1_000_001)
        .memory()
        .exports(&enc::standard_exports())
        .finish();
    let (id, out) = run_module(env, "funcs", &module, "/m.wasm")?;
    ensure_refused(&out, &["/m.wasm", "count exceeds limit"])?;
    assert_clean(env, &id)
}
