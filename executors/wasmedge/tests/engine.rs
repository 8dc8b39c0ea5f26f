//! The WasmEdge adapter with real compilation and execution: only what is specific to libwasmedge
//! (its AOT artifacts, built-in WASI, log-based memory cap, threads); the shared end-to-end suite
//! covers the rest. Needs the `wasmedge` feature and libwasmedge 0.17 (`make unit-wasmedge`);
//! without the library these tests only type-check (`make check-wasmedge`, DOCS_RS=1).
//!
//! Guests whose stdio matters, and the thread count check, run in a fresh process of this test
//! binary (see [`child_runner`]): fds 1 and 2 are a file there, and no other test's threads run.
#![cfg(feature = "wasmedge")]

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmpod_runtime::cache::{EntryKey, ModuleCache, Outcome};
use wasmpod_runtime::engine::check_entry;
use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};
use wasmpod_wasmedge::WasmEdge;

const EXIT_7: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 7)))
  (func (export "boom") unreachable)
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))"#;

const GROW: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (drop (memory.grow (i32.const 100)))))"#;

const BIG: &str = r#"(module
  (memory (export "memory") 32)
  (func (export "_start")))"#;

fn guest(func: Option<&str>, memory_limit: Option<u64>) -> GuestContext {
    GuestContext {
        args: vec!["/m.wasm".into()],
        env: vec!["A=b".into()],
        cwd: "/".into(),
        func: func.map(str::to_string),
        memory_limit: memory_limit.map(wasmpod_runtime::MemoryLimit::fixed),
        grants: Default::default(),
    }
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn new_engine() -> WasmEdge {
    WasmEdge::new().unwrap_or_else(|e| panic!("libwasmedge unusable: {e}"))
}

#[test]
fn aot_artifacts_through_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmedge"));
    let engine = new_engine();
    let key = engine.compatibility_key();
    assert!(key.starts_with("wasmedge-0.17."), "{key}");

    let (_, path, first) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!(first, Outcome::Miss);
    let (module, path2, second) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!((second, &path2), (Outcome::Hit, &path));
    assert_eq!(engine.run(&module, &guest(None, None)).unwrap(), 7);
    match engine.run(&module, &guest(Some("boom"), None)) {
        Err(EngineError::Trap(msg)) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }

    // A corrupted entry is a load error, and the cache compiles the module again.
    std::fs::write(&path, b"not an artifact").unwrap();
    let (module, _, outcome) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!(outcome, Outcome::Replaced);
    // A fresh engine loads the entry, as the zygote worker does.
    let worker = new_engine();
    assert_eq!(
        worker
            .run(
                &wasmpod_runtime::cache::load(
                    &worker,
                    &path,
                    &EntryKey::for_source(EXIT_7.as_bytes(), &worker.compatibility_key()),
                )
                .unwrap(),
                &guest(None, None)
            )
            .unwrap(),
        7
    );
    assert_eq!(engine.run(&module, &guest(None, None)).unwrap(), 7);
}

#[test]
fn entries_and_bad_modules() {
    let engine = new_engine();
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("m.bin");
    std::fs::write(&artifact, engine.precompile(EXIT_7.as_bytes()).unwrap()).unwrap();
    let module = engine.load(std::fs::read(&artifact).unwrap()).unwrap();
    check_entry(&engine, &module, None).unwrap();
    check_entry(&engine, &module, Some("boom")).unwrap();
    let err = check_entry(&engine, &module, Some("add"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must take no parameters"), "{err}");
    let err = check_entry(&engine, &module, Some("nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`nope` not found"), "{err}");

    for bad in [
        std::fs::read(fixture("bad/truncated.wasm")).unwrap(),
        std::fs::read(fixture("bad/not-wasm.wasm")).unwrap(),
        b"(module (func (export \"_start\") (call 7)))".to_vec(),
    ] {
        match engine.precompile(&bad) {
            Err(EngineError::Compile(_)) => {}
            other => panic!("expected a compile error, got {other:?}"),
        }
    }
    let component = std::fs::read(fixture("wasm/hello.component.wasm")).unwrap();
    assert!(matches!(
        engine.precompile(&component),
        Err(EngineError::ComponentUnsupported { .. })
    ));
}

#[test]
fn memory_limit_from_the_page_limit_and_the_log() {
    let engine = new_engine();
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmedge"));
    let (grow, _, _) = cache.get_or_compile(&engine, GROW.as_bytes()).unwrap();
    match engine.run(&grow, &guest(None, Some(1 << 20))) {
        Err(EngineError::MemoryLimit { limit, requested }) => {
            assert_eq!((limit, requested), (1 << 20, 17 * 65536));
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    assert_eq!(engine.run(&grow, &guest(None, Some(8 << 20))).unwrap(), 0);
    assert_eq!(engine.run(&grow, &guest(None, None)).unwrap(), 0);

    let (big, _, _) = cache.get_or_compile(&engine, BIG.as_bytes()).unwrap();
    match engine.run(&big, &guest(None, Some(1 << 20))) {
        Err(EngineError::MemoryLimit { requested, .. }) => assert_eq!(requested, 32 * 65536),
        other => panic!("expected the memory limit, got {other:?}"),
    }
}

// ---- guests in a child process -------------------------------------------------------------

const CHILD: &str = "WASMPOD_WASMEDGE_CHILD";

/// Runs `module` (a path to `.wasm`/`.wat`) with `args` in a fresh process of this test binary;
/// returns the engine's result (`ok N`, `trap MSG`, `memory-limit L R`, `error MSG`) and what the
/// guest wrote on stdout and stderr, in order.
fn run_in_child(
    module: &Path,
    args: &[&str],
    configure: impl FnOnce(&mut Command),
) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (result, output) = (dir.path().join("result"), dir.path().join("output"));
    let mut cmd = child(&result, "run");
    cmd.env("CHILD_MODULE", module)
        .env("CHILD_ARGS", args.join("\x1f"))
        .env("CHILD_OUTPUT", &output);
    configure(&mut cmd);
    let status = cmd.output().unwrap();
    assert!(status.status.success(), "child failed: {status:?}");
    (
        std::fs::read_to_string(&result).unwrap_or_default(),
        std::fs::read_to_string(&output).unwrap_or_default(),
    )
}

fn child(result: &Path, mode: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_runner", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env("CHILD_RESULT", result)
        .stdin(std::process::Stdio::null());
    cmd
}

/// The child side: does nothing unless started by [`child`].
#[test]
fn child_runner() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let result = match mode.as_str() {
        "run" => {
            let engine = new_engine();
            let dir = tempfile::tempdir().unwrap();
            let artifact = dir.path().join("m.bin");
            let source = std::fs::read(var("CHILD_MODULE")).unwrap();
            std::fs::write(&artifact, engine.precompile(&source).unwrap()).unwrap();
            let module = engine.load(std::fs::read(&artifact).unwrap()).unwrap();
            let guest = GuestContext {
                args: var("CHILD_ARGS")
                    .split('\x1f')
                    .map(str::to_string)
                    .collect(),
                env: vec!["B=2".into(), "A=1=x".into(), "EMPTY".into()],
                cwd: std::env::var("CHILD_CWD").map_or_else(|_| "/".into(), PathBuf::from),
                func: std::env::var("CHILD_FUNC").ok(),
                memory_limit: None,
                grants: Default::default(),
            };
            // From here on, fds 1 and 2 are the guest's (one file, so their order shows).
            redirect_stdout_stderr(Path::new(&var("CHILD_OUTPUT")));
            match engine.run(&module, &guest) {
                Ok(code) => format!("ok {code}"),
                Err(EngineError::Trap(msg)) => format!("trap {msg}"),
                Err(e) => format!("error {e}"),
            }
        }
        "threads" => {
            let artifact = PathBuf::from(var("CHILD_ARTIFACT"));
            let before = threads();
            let engine = new_engine();
            let module = engine.load(std::fs::read(&artifact).unwrap()).unwrap();
            let after = threads();
            check_entry(&engine, &module, None).unwrap();
            format!("{before} {after}")
        }
        other => panic!("unknown child mode {other}"),
    };
    std::fs::write(var("CHILD_RESULT"), result).unwrap();
    std::process::exit(0);
}

fn redirect_stdout_stderr(path: &Path) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::create(path).unwrap();
    for fd in [1, 2] {
        // SAFETY: dup2 onto this process's own stdio fds.
        assert!(unsafe { libc::dup2(file.as_raw_fd(), fd) } >= 0);
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The zygote worker calls `new` and `load`, then forks: they must start no thread.
#[test]
fn no_threads_after_new_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("m.bin");
    let source = std::fs::read(fixture("wasm/testprog.wasm")).unwrap();
    std::fs::write(&artifact, new_engine().precompile(&source).unwrap()).unwrap();
    let result = dir.path().join("result");
    let out = child(&result, "threads")
        .env("CHILD_ARTIFACT", &artifact)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let counts = std::fs::read_to_string(&result).unwrap();
    let (before, after) = counts.split_once(' ').unwrap();
    assert_eq!(
        before, after,
        "threads before and after WasmEdge::new() + load()"
    );
}

/// libwasmedge's own WASI: args, env, the process's stdio, exit codes, preopens.
#[test]
fn built_in_wasi() {
    let (result, output) = run_in_child(
        &fixture("wasm/hello.wasm"),
        &["/app/hello.wasm", "one", "two words"],
        |_| {},
    );
    assert_eq!(result, "ok 0");
    assert_eq!(
        output,
        "hello from wasm\narg[0]=/app/hello.wasm\narg[1]=one\narg[2]=two words\n\
         env A=1=x\nenv B=2\nenv EMPTY=\n"
    );

    let testprog = fixture("wasm/testprog.wasm");
    let (result, output) = run_in_child(&testprog, &["/t.wasm", "exit", "3"], |_| {});
    assert_eq!((result.as_str(), output.as_str()), ("ok 3", ""));
    let (result, output) = run_in_child(&testprog, &["/t.wasm", "stderr", "to stderr"], |_| {});
    assert_eq!(
        (result.as_str(), output.as_str()),
        ("ok 0", "to stderr\nout\n")
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "some data\n").unwrap();
    let absolute = dir.path().join("data.txt");
    let (result, output) = run_in_child(
        &testprog,
        &["/t.wasm", "cat", absolute.to_str().unwrap()],
        |_| {},
    );
    assert_eq!((result.as_str(), output.as_str()), ("ok 0", "some data\n"));
    let (result, output) = run_in_child(&testprog, &["/t.wasm", "cat", "data.txt"], |cmd| {
        cmd.env("CHILD_CWD", dir.path());
    });
    assert_eq!((result.as_str(), output.as_str()), ("ok 0", "some data\n"));

    let (result, output) = run_in_child(&fixture("wat/greet.wat"), &["/greet.wat"], |cmd| {
        cmd.env("CHILD_FUNC", "greet");
    });
    assert_eq!(
        (result.as_str(), output.as_str()),
        ("ok 0", "hello from greet\n")
    );
}
