//! The wasmtime adapter against the shared module cache, with real compilation and execution.

use std::path::Path;
use std::time::{Duration, SystemTime};

use wasmpod_runtime::cache::{EntryKey, ModuleCache, Outcome, IN_USE_GRACE, STALE_TMP_AGE};
use wasmpod_runtime::engine::check_entry;
use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};
use wasmpod_wasmtime::Wasmtime;

const EXIT_7: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 7)))
  (func (export "boom") unreachable))"#;

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

#[test]
fn cache_miss_then_hit_then_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmtime"));
    let engine = Wasmtime::new().unwrap();

    let (_, path, first) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!(first, Outcome::Miss);
    let (module, path2, second) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!((second, &path2), (Outcome::Hit, &path));

    assert_eq!(engine.run(&module, &guest(None)).unwrap(), 7);
    match engine.run(&module, &guest(Some("boom"))) {
        Err(EngineError::Trap(msg)) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn corrupted_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmtime"));
    let engine = Wasmtime::new().unwrap();
    let (_, path, _) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    std::fs::write(&path, b"not an artifact").unwrap();
    let (module, _, outcome) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!(outcome, Outcome::Replaced);
    assert_eq!(engine.run(&module, &guest(None)).unwrap(), 7);
}

#[test]
fn exports_and_bad_modules() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmtime"));
    let engine = Wasmtime::new().unwrap();
    let (module, _, _) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    check_entry(&engine, &module, Some("boom")).unwrap();
    let err = check_entry(&engine, &module, Some("nope"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`nope` not found") && err.contains("_start, boom"),
        "{err}"
    );

    let truncated = &b"\0asm\x01\0\0\0\x01\x05"[..];
    let err = cache
        .get_or_compile(&engine, truncated)
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("invalid wasm module")),
        "{err:?}"
    );
    assert!(std::fs::read_dir(cache.dir()).unwrap().all(|e| {
        let name = e.unwrap().file_name();
        !name.to_string_lossy().starts_with(".tmp")
    }));
}

/// A module that exits with `code`; distinct codes give distinct cache keys.
fn exit_with(code: i32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code}))))"#
    )
}

/// Pretends `path` was last used `ago` in the past.
fn set_last_used(path: &Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

fn last_used(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// The size of the cache entry of `wat`: the entry's header, then the artifact.
fn artifact_len(engine: &Wasmtime, wat: &str) -> u64 {
    (wasmpod_runtime::cache::entry::HEADER_LEN + engine.precompile(wat.as_bytes()).unwrap().len())
        as u64
}

fn entries(cache: &ModuleCache) -> usize {
    std::fs::read_dir(cache.dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("bin".as_ref()))
        .count()
}

const HOUR: Duration = Duration::from_secs(3600);

/// Compiles A and B, last used two hours and one hour ago; with `hit_a`, A is then used
/// again. Then C is compiled in a cache that fits two of the three. Returns the three paths.
fn fill_then_compile_third(
    hit_a: bool,
) -> (
    tempfile::TempDir,
    ModuleCache,
    Wasmtime,
    [std::path::PathBuf; 3],
) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Wasmtime::new().unwrap();
    let (a, b, c) = (exit_with(1), exit_with(2), exit_with(3));
    let roomy = ModuleCache::with_limit(dir.path().join("wasmtime"), u64::MAX);
    let (_, path_a, _) = roomy.get_or_compile(&engine, a.as_bytes()).unwrap();
    let (_, path_b, _) = roomy.get_or_compile(&engine, b.as_bytes()).unwrap();
    assert_ne!(path_a, path_b);
    set_last_used(&path_a, 2 * HOUR);
    set_last_used(&path_b, HOUR);

    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    let limit = len(&path_a).max(len(&path_b)) + artifact_len(&engine, &c);
    let cache = ModuleCache::with_limit(dir.path().join("wasmtime"), limit);
    if hit_a {
        let (_, _, outcome) = cache.get_or_compile(&engine, a.as_bytes()).unwrap();
        assert_eq!(outcome, Outcome::Hit);
    }
    let (_, path_c, outcome) = cache.get_or_compile(&engine, c.as_bytes()).unwrap();
    assert_eq!(outcome, Outcome::Miss);
    (dir, cache, engine, [path_a, path_b, path_c])
}

#[test]
fn full_cache_evicts_least_recently_used() {
    let (_dir, cache, engine, [a, b, c]) = fill_then_compile_third(false);
    assert!(!a.exists(), "A was the least recently used");
    assert!(b.exists() && c.exists());
    assert_eq!(entries(&cache), 2);
    let (module, _, outcome) = cache
        .get_or_compile(&engine, exit_with(1).as_bytes())
        .unwrap();
    assert_eq!(outcome, Outcome::Miss);
    assert_eq!(engine.run(&module, &guest(None)).unwrap(), 1);
}

#[test]
fn hit_updates_recency_so_the_other_entry_is_evicted() {
    let (_dir, cache, engine, [a, b, c]) = fill_then_compile_third(true);
    assert!(!b.exists(), "B was the least recently used once A was hit");
    assert!(a.exists() && c.exists());
    assert_eq!(entries(&cache), 2);
    assert!(last_used(&a) > SystemTime::now() - IN_USE_GRACE);

    // B comes back as a miss that compiles again and runs.
    let (module, path, outcome) = cache
        .get_or_compile(&engine, exit_with(2).as_bytes())
        .unwrap();
    assert_eq!((outcome, &path), (Outcome::Miss, &b));
    assert_eq!(engine.run(&module, &guest(None)).unwrap(), 2);
}

#[test]
fn stale_temp_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::with_limit(dir.path().join("wasmtime"), u64::MAX);
    let engine = Wasmtime::new().unwrap();
    std::fs::create_dir_all(cache.dir()).unwrap();
    let stale = cache.dir().join(".tmp-4242-ThreadId(1)");
    let live = cache.dir().join(".tmp-4243-ThreadId(1)");
    std::fs::write(&stale, b"half an artifact").unwrap();
    std::fs::write(&live, b"being written").unwrap();
    set_last_used(&stale, STALE_TMP_AGE + Duration::from_secs(60));

    cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert!(!stale.exists(), "a crashed writer's temp file is removed");
    assert!(
        live.exists(),
        "a recent temp file may belong to a live writer"
    );
}

#[test]
fn entry_larger_than_the_limit_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::with_limit(dir.path().join("wasmtime"), 1);
    let engine = Wasmtime::new().unwrap();
    let (_, older, _) = cache
        .get_or_compile(&engine, exit_with(1).as_bytes())
        .unwrap();
    set_last_used(&older, HOUR);

    let (module, path, outcome) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!(outcome, Outcome::Miss);
    assert!(!older.exists(), "everything older is evicted");
    assert!(path.exists(), "the entry just written is kept");
    assert_eq!(engine.run(&module, &guest(None)).unwrap(), 7);
    // A fresh engine loads it from the path, as the zygote worker does.
    let worker = Wasmtime::new().unwrap();
    let reloaded = load_entry(&worker, &path, EXIT_7.as_bytes());
    assert_eq!(worker.run(&reloaded, &guest(None)).unwrap(), 7);
    let (_, _, again) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    assert_eq!(again, Outcome::Hit);
}

#[test]
fn entries_just_handed_out_are_not_evicted() {
    // Another create may have been given A's path and not opened it yet: even over the
    // limit, an entry used within the grace period stays until it is older.
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::with_limit(dir.path().join("wasmtime"), 1);
    let engine = Wasmtime::new().unwrap();
    let (_, a, _) = cache
        .get_or_compile(&engine, exit_with(1).as_bytes())
        .unwrap();
    let (_, b, _) = cache
        .get_or_compile(&engine, exit_with(2).as_bytes())
        .unwrap();
    assert!(a.exists() && b.exists());
    let worker = Wasmtime::new().unwrap();
    let module = load_entry(&worker, &a, exit_with(1).as_bytes());
    assert_eq!(worker.run(&module, &guest(None)).unwrap(), 1);
}

#[test]
fn memory_limit_stops_a_growing_guest() {
    const GROW: &str = r#"(module
      (memory (export "memory") 1)
      (func (export "_start") (drop (memory.grow (i32.const 100)))))"#;
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmtime"));
    let engine = Wasmtime::new().unwrap();
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
}

/// A command component (the hello fixture built for wasm32-wasip2) compiles, goes through the
/// cache like a module, and is entered through `wasi:cli/run` only.
#[test]
fn component_is_cached_and_entered_through_cli_run() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/wasm/hello.component.wasm");
    let source = std::fs::read(&fixture).expect("run tests/fixtures/build.sh");
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().join("wasmtime"));
    let engine = Wasmtime::new().unwrap();
    let (_, _, first) = cache.get_or_compile(&engine, &source).unwrap();
    assert_eq!(first, Outcome::Miss);
    let (component, _, second) = cache.get_or_compile(&engine, &source).unwrap();
    assert_eq!(second, Outcome::Hit);
    check_entry(&engine, &component, None).unwrap();
    let err = check_entry(&engine, &component, Some("main")).unwrap_err();
    assert!(err.to_string().contains("wasi:cli/run"), "{err}");
    // A core module is not a command component and vice versa.
    let (module, _, _) = cache.get_or_compile(&engine, EXIT_7.as_bytes()).unwrap();
    check_entry(&engine, &module, None).unwrap();
}

/// Loads the cache entry at `path` of the module `source`, as the zygote does.
fn load_entry(engine: &Wasmtime, path: &Path, source: &[u8]) -> wasmpod_wasmtime::Guest {
    let key = EntryKey::for_source(source, &engine.compatibility_key());
    wasmpod_runtime::cache::load(engine, path, &key).unwrap()
}
