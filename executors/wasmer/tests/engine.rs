//! The wasmer adapter against the shared module cache, with real compilation and execution.
//!
//! Guests whose stdio matters, and the thread count check, run in a fresh process of this test
//! binary (see [`child_runner`]): its fds 0/1/2 are files, as containerd's FIFOs are in the
//! container's init, and no other test's threads are around.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmpod_runtime::cache::{CacheError, EntryKey, ModuleCache, Outcome};
use wasmpod_runtime::engine::check_entry;
use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};
use wasmpod_wasmer::Wasmer;

const EXIT_7: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 7)))
  (func (export "boom") unreachable))"#;

const GROW: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (drop (memory.grow (i32.const 100)))))"#;

fn guest(func: Option<&str>) -> GuestContext {
    GuestContext {
        args: vec!["/m.wasm".into()],
        env: vec!["A=b".into()],
        cwd: "/".into(),
        func: func.map(str::to_string),
        memory_limit: None,
        grants: Default::default(),
    }
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

#[test]
fn cache_miss_then_hit_then_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmer"));
    let engine = Wasmer::new().unwrap();

    let (_, path, first) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!(first, Outcome::Miss);
    let (module, path2, second) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!((second, &path2), (Outcome::Hit, &path));

    assert_eq!(engine.run(&module, &guest(None)).unwrap(), 7);
    match engine.run(&module, &guest(Some("boom"))) {
        Err(EngineError::Trap(msg)) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    // A fresh engine loads it from the path, as the zygote worker does.
    let worker = Wasmer::new().unwrap();
    assert_eq!(worker.compatibility_key(), engine.compatibility_key());
    let key = EntryKey::for_source(EXIT_7.as_bytes(), &worker.compatibility_key());
    let reloaded = wasmpod_runtime::cache::load(&worker, &path, &key).unwrap();
    assert_eq!(worker.run(&reloaded, &guest(None)).unwrap(), 7);
}

#[test]
fn compatibility_key_names_the_engine_build() {
    let key = Wasmer::new().unwrap().compatibility_key();
    assert!(key.starts_with("wasmer-7.4.2-"), "{key}");
    assert!(key.contains(std::env::consts::ARCH), "{key}");
}

#[test]
fn corrupted_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmer"));
    let engine = Wasmer::new().unwrap();
    let (_, path, _) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    std::fs::write(&path, b"not an artifact").unwrap();
    let (module, _, outcome) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!(outcome, Outcome::Replaced);
    assert_eq!(engine.run(&module, &guest(None)).unwrap(), 7);
}

fn expect_load_error(engine: &Wasmer, path: &Path, key: &EntryKey, what: &str) {
    match wasmpod_runtime::cache::load(engine, path, key) {
        Err(CacheError::Entry { path: p, .. }) => assert_eq!(p, path, "{what}"),
        Err(other) => panic!("{what}: expected an entry error, got {other}"),
        Ok(_) => panic!("{what}: loaded"),
    }
}

/// wasmer 7.4.2's loader runs unchecked: only entries this node wrote for this module may
/// reach it. Every damaged or foreign file is refused by the cache before wasmer sees it.
#[test]
fn corrupted_or_foreign_artifacts_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmer"));
    let engine = Wasmer::new().unwrap();
    let key = EntryKey::for_source(EXIT_7.as_bytes(), &engine.compatibility_key());
    let (_, path, _) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    let entry = std::fs::read(&path).unwrap();
    let write = |bytes: &[u8]| std::fs::write(&path, bytes).unwrap();
    wasmpod_runtime::cache::load(&engine, &path, &key).unwrap();

    // One flipped bit anywhere: in the machine code as much as in the metadata.
    for at in [entry.len() / 3, entry.len() / 2, entry.len() - 1] {
        let mut flipped = entry.clone();
        flipped[at] ^= 0x40;
        write(&flipped);
        expect_load_error(&engine, &path, &key, &format!("bit flipped at {at}"));
    }
    write(&entry[..entry.len() / 2]);
    expect_load_error(&engine, &path, &key, "truncated");
    write(&[]);
    expect_load_error(&engine, &path, &key, "empty");
    // wasmer's own serialization without our header (what another tool would write).
    write(&engine.precompile(EXIT_7.as_bytes()).unwrap());
    expect_load_error(&engine, &path, &key, "bare wasmer artifact");
    // An ELF file: wasmer would hand it to its unchecked ELF loader.
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.extend_from_slice(&entry);
    write(&elf);
    expect_load_error(&engine, &path, &key, "ELF");
    // A wasm module where an artifact is expected.
    write(&std::fs::read(fixture("wasm/hello.wasm")).unwrap());
    expect_load_error(&engine, &path, &key, "wasm module");
    // Another module's entry under this module's name.
    let (_, other, _) = cache.get_or_compile(&engine, GROW.as_bytes()).unwrap();
    std::fs::copy(&other, &path).unwrap();
    expect_load_error(&engine, &path, &key, "another module's entry");
    expect_load_error(
        &engine,
        &dir.path().join("missing.bin"),
        &key,
        "missing file",
    );
}

#[test]
fn exports_and_bad_modules() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmer"));
    let engine = Wasmer::new().unwrap();
    let (module, _, _) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    check_entry(&engine, &module, Some("boom")).unwrap();
    let err = check_entry(&engine, &module, Some("nope"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`nope` not found") && err.contains("_start, boom"),
        "{err}"
    );

    for bad in [
        std::fs::read(fixture("bad/truncated.wasm")).unwrap(),
        std::fs::read(fixture("bad/not-wasm.wasm")).unwrap(),
        b"(module (func (export \"_start\") (call 7)))".to_vec(),
    ] {
        let err = cache
            .get_or_compile(&engine, &bad)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("invalid wasm module")),
            "{err:?}"
        );
    }
    assert!(std::fs::read_dir(cache.dir()).unwrap().all(|e| {
        let name = e.unwrap().file_name();
        !name.to_string_lossy().starts_with(".tmp")
    }));
}

#[test]
fn memory_limit_stops_a_growing_guest() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmer"));
    let engine = Wasmer::new().unwrap();
    let (module, _, _) = cache.get_or_compile(&engine, GROW.as_bytes()).unwrap();

    let mut limited = guest(None);
    limited.memory_limit = Some(wasmpod_runtime::MemoryLimit::fixed(1 << 20));
    match engine.run(&module, &limited) {
        Err(EngineError::MemoryLimit { limit, requested }) => {
            assert_eq!(limit, 1 << 20);
            assert_eq!(requested, 101 * 65536);
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    limited.memory_limit = Some(wasmpod_runtime::MemoryLimit::fixed(8 << 20));
    assert_eq!(engine.run(&module, &limited).unwrap(), 0);
    // Without a limit the engine's own tunables apply.
    assert_eq!(engine.run(&module, &guest(None)).unwrap(), 0);
}

#[test]
fn initial_memory_above_the_limit_is_the_memory_limit() {
    const BIG: &str = r#"(module
      (memory (export "memory") 32)
      (func (export "_start")))"#;
    let engine = Wasmer::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (module, _, _) = ModuleCache::new(dir.path().join("wasmer"))
        .get_or_compile(&engine, BIG.as_bytes())
        .unwrap();
    let mut limited = guest(None);
    limited.memory_limit = Some(wasmpod_runtime::MemoryLimit::fixed(1 << 20));
    match engine.run(&module, &limited) {
        Err(EngineError::MemoryLimit { requested, .. }) => assert_eq!(requested, 32 * 65536),
        other => panic!("expected the memory limit, got {other:?}"),
    }
}

// ---- guests in a child process -------------------------------------------------------------

const CHILD: &str = "WASMPOD_WASMER_CHILD";

/// What a child run gave: the engine's result (`ok N`, `trap MSG`, `memory-limit L R`,
/// `error MSG`) and everything the guest wrote on stdout and stderr, in order.
struct ChildRun {
    result: String,
    output: String,
}

/// Runs `module` (a path to `.wasm`/`.wat` source) in a fresh process of this test binary.
fn run_in_child(module: &Path, args: &[&str], configure: impl FnOnce(&mut Command)) -> ChildRun {
    let dir = tempfile::tempdir().unwrap();
    let (result, output) = (dir.path().join("result"), dir.path().join("output"));
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_runner", "--nocapture", "--test-threads=1"])
        .env(CHILD, "run")
        .env("CHILD_MODULE", module)
        .env("CHILD_ARGS", args.join("\x1f"))
        .env("CHILD_RESULT", &result)
        .env("CHILD_OUTPUT", &output)
        .stdin(std::process::Stdio::null());
    configure(&mut cmd);
    let status = cmd.output().unwrap();
    assert!(
        status.status.success(),
        "child failed: {}\n{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    ChildRun {
        result: std::fs::read_to_string(&result).unwrap_or_default(),
        output: std::fs::read_to_string(&output).unwrap_or_default(),
    }
}

/// The child side: does nothing unless started by [`run_in_child`] or [`no_threads_after_new_and_load`].
#[test]
fn child_runner() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    match mode.as_str() {
        "run" => {
            let engine = Wasmer::new().unwrap();
            let source = std::fs::read(var("CHILD_MODULE")).unwrap();
            let module = engine.load(engine.precompile(&source).unwrap()).unwrap();
            let args = var("CHILD_ARGS");
            let guest = GuestContext {
                args: args.split('\x1f').map(str::to_string).collect(),
                env: var("CHILD_ENV")
                    .split('\x1f')
                    .filter(|kv| !kv.is_empty())
                    .map(str::to_string)
                    .collect(),
                cwd: std::env::var("CHILD_CWD").map_or_else(|_| "/".into(), PathBuf::from),
                func: std::env::var("CHILD_FUNC").ok(),
                memory_limit: std::env::var("CHILD_MEMORY_LIMIT")
                    .ok()
                    .map(|l| wasmpod_runtime::MemoryLimit::fixed(l.parse().unwrap())),
                grants: Default::default(),
            };
            // From here on, fds 1 and 2 are the guest's (one file, so their order shows).
            redirect_stdout_stderr(Path::new(&var("CHILD_OUTPUT")));
            let result = match engine.run(&module, &guest) {
                Ok(code) => format!("ok {code}"),
                Err(EngineError::Trap(msg)) => format!("trap {msg}"),
                Err(EngineError::MemoryLimit { limit, requested }) => {
                    format!("memory-limit {limit} {requested}")
                }
                Err(e) => format!("error {e}"),
            };
            std::fs::write(var("CHILD_RESULT"), result).unwrap();
            std::process::exit(0);
        }
        "threads" => {
            let before = threads();
            let engine = Wasmer::new().unwrap();
            let artifact = std::fs::read(var("CHILD_ARTIFACT")).unwrap();
            let module = engine.load(artifact).unwrap();
            let after = threads();
            assert!(engine.function_exports(&module).contains(&"_start".into()));
            std::fs::write(var("CHILD_RESULT"), format!("{before} {after}")).unwrap();
            std::process::exit(0);
        }
        "maps" => {
            // As the shim does on every Create: load, check the entry, drop.
            let engine = Wasmer::new().unwrap();
            let artifact = PathBuf::from(var("CHILD_ARTIFACT"));
            let load_and_drop = || {
                let module = engine.load(std::fs::read(&artifact).unwrap()).unwrap();
                check_entry(&engine, &module, None).unwrap();
            };
            load_and_drop();
            let before = mappings();
            for _ in 0..50 {
                load_and_drop();
            }
            let after = mappings();
            std::fs::write(var("CHILD_RESULT"), format!("{before} {after}")).unwrap();
            std::process::exit(0);
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn redirect_stdout_stderr(path: &Path) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::create(path).unwrap();
    for fd in [1, 2] {
        // SAFETY: dup2 onto this process's own stdio fds.
        assert!(unsafe { libc::dup2(file.as_raw_fd(), fd) } >= 0);
    }
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Runs child `mode` on a compiled testprog; returns its two counts.
fn counts_in_child(mode: &str) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Wasmer::new().unwrap();
    let artifact = dir.path().join("m.bin");
    let source = std::fs::read(fixture("wasm/testprog.wasm")).unwrap();
    std::fs::write(&artifact, engine.precompile(&source).unwrap()).unwrap();
    let result = dir.path().join("result");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_runner", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env("CHILD_ARTIFACT", &artifact)
        .env("CHILD_RESULT", &result)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let counts = std::fs::read_to_string(&result).unwrap();
    let (before, after) = counts.split_once(' ').unwrap();
    (before.parse().unwrap(), after.parse().unwrap())
}

#[test]
fn no_threads_after_new_and_load() {
    let (before, after) = counts_in_child("threads");
    assert_eq!(
        before, after,
        "threads before and after Wasmer::new() + load()"
    );
}

#[test]
fn loaded_modules_release_their_code() {
    let (before, after) = counts_in_child("maps");
    assert!(
        after <= before + 4,
        "memory mappings grew from {before} to {after} over 50 loads"
    );
}

#[test]
fn args_env_and_stdout() {
    let run = run_in_child(
        &fixture("wasm/hello.wasm"),
        &["/app/hello.wasm", "one", "two words"],
        |cmd| {
            cmd.env("CHILD_ENV", "B=2\x1fA=1=x\x1fEMPTY");
        },
    );
    assert_eq!(run.result, "ok 0");
    assert_eq!(
        run.output,
        "hello from wasm\narg[0]=/app/hello.wasm\narg[1]=one\narg[2]=two words\n\
         env A=1=x\nenv B=2\nenv EMPTY=\n"
    );
}

#[test]
fn exit_codes_and_traps() {
    let testprog = fixture("wasm/testprog.wasm");
    let run = run_in_child(&testprog, &["/t.wasm", "exit", "3"], |_| {});
    assert_eq!((run.result.as_str(), run.output.as_str()), ("ok 3", ""));
    let run = run_in_child(&testprog, &["/t.wasm", "exit", "0"], |_| {});
    assert_eq!(run.result, "ok 0");
    let run = run_in_child(&testprog, &["/t.wasm", "trap"], |_| {});
    assert!(
        run.result.starts_with("trap ") && run.result.contains("unreachable"),
        "{}",
        run.result
    );
    let run = run_in_child(&testprog, &["/t.wasm", "nonsense"], |_| {});
    assert_eq!(run.result, "ok 2");
    assert!(run.output.contains("unknown mode"), "{}", run.output);
}

#[test]
fn stdout_and_stderr_keep_their_order_and_nothing_is_lost() {
    let testprog = fixture("wasm/testprog.wasm");
    let run = run_in_child(&testprog, &["/t.wasm", "stderr", "to stderr"], |_| {});
    assert_eq!(run.result, "ok 0");
    assert_eq!(run.output, "to stderr\nout\n");

    let run = run_in_child(&testprog, &["/t.wasm", "flood", "3000000"], |_| {});
    assert_eq!(run.result, "ok 0");
    let expected: String = "0123456789abcdef".chars().cycle().take(3_000_000).collect();
    assert_eq!(run.output.len(), expected.len() + "flood done\n".len());
    assert!(run.output == expected + "flood done\n");
}

#[test]
fn stdin_is_the_process_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, "line 1\nline 2\n").unwrap();
    let run = run_in_child(
        &fixture("wasm/testprog.wasm"),
        &["/t.wasm", "echo-stdin"],
        |cmd| {
            cmd.stdin(std::fs::File::open(&input).unwrap());
        },
    );
    assert_eq!(run.result, "ok 0");
    assert_eq!(run.output, "line 1\nline 2\n");
}

#[test]
fn sleep_returns() {
    let started = std::time::Instant::now();
    let run = run_in_child(
        &fixture("wasm/testprog.wasm"),
        &["/t.wasm", "sleep", "0.3"],
        |_| {},
    );
    assert_eq!(
        (run.result.as_str(), run.output.as_str()),
        ("ok 0", "slept\n")
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[test]
fn files_by_absolute_and_cwd_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "some data\n").unwrap();
    let testprog = fixture("wasm/testprog.wasm");
    let absolute = dir.path().join("data.txt");
    let run = run_in_child(
        &testprog,
        &["/t.wasm", "cat", absolute.to_str().unwrap()],
        |_| {},
    );
    assert_eq!(
        (run.result.as_str(), run.output.as_str()),
        ("ok 0", "some data\n")
    );

    let run = run_in_child(&testprog, &["/t.wasm", "cat", "data.txt"], |cmd| {
        cmd.env("CHILD_CWD", dir.path());
    });
    assert_eq!(
        (run.result.as_str(), run.output.as_str()),
        ("ok 0", "some data\n")
    );

    let run = run_in_child(&testprog, &["/t.wasm", "cat", "/no/such/file"], |_| {});
    assert_eq!(run.result, "ok 1");
    assert!(
        run.output.starts_with("cat /no/such/file:"),
        "{}",
        run.output
    );
}

#[test]
fn named_export_instead_of_start() {
    let greet = fixture("wat/greet.wat");
    let run = run_in_child(&greet, &["/greet.wat"], |_| {});
    assert_eq!(
        (run.result.as_str(), run.output.as_str()),
        ("ok 0", "start called\n")
    );
    let run = run_in_child(&greet, &["/greet.wat"], |cmd| {
        cmd.env("CHILD_FUNC", "greet");
    });
    assert_eq!(
        (run.result.as_str(), run.output.as_str()),
        ("ok 0", "hello from greet\n")
    );
}

#[test]
fn rust_guest_over_its_memory_limit() {
    let run = run_in_child(
        &fixture("wasm/testprog.wasm"),
        &["/t.wasm", "grow-memory", "64"],
        |cmd| {
            cmd.env("CHILD_MEMORY_LIMIT", (24u64 << 20).to_string());
        },
    );
    let mut parts = run.result.split(' ');
    assert_eq!(parts.next(), Some("memory-limit"), "{}", run.result);
    assert_eq!(parts.next(), Some((24u64 << 20).to_string().as_str()));
    let requested: u64 = parts.next().unwrap().parse().unwrap();
    assert!(requested > 24 << 20, "{requested}");
    assert!(run.output.contains("allocated 16 MiB"), "{}", run.output);
    assert!(!run.output.contains("grew"), "{}", run.output);

    let run = run_in_child(
        &fixture("wasm/testprog.wasm"),
        &["/t.wasm", "grow-memory", "8"],
        |cmd| {
            cmd.env("CHILD_MEMORY_LIMIT", (24u64 << 20).to_string());
        },
    );
    assert_eq!(
        (run.result.as_str(), run.output.as_str()),
        ("ok 0", "grew\n")
    );
}
