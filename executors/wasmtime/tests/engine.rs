//! The wasmtime adapter against the shared module cache, with real compilation and execution.

use wasmpod_runtime::cache::{ModuleCache, Outcome};
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
