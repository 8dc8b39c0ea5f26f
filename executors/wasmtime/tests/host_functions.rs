//! `WasmtimeWith<H>`: core modules link the extra functions next to WASI; the plain engine
//! refuses a module that imports them; an error from a function traps the guest.

use wasmpod_runtime::{EngineError, GuestContext, WasmEngine};
use wasmpod_wasmtime::{CoreState, HostFunctions, Wasmtime, WasmtimeWith};
use wasmtime::{Caller, Linker};

/// `test::double(n) -> 2n`, and `test::fail()`, which returns an error.
struct Double;

impl HostFunctions for Double {
    const NAME: &'static str = "double";

    fn add_to_linker(linker: &mut Linker<CoreState>) -> wasmtime::Result<()> {
        linker.func_wrap("test", "double", |_: Caller<'_, CoreState>, n: i32| n * 2)?;
        linker.func_wrap("test", "fail", || -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg("the host function refused"))
        })?;
        Ok(())
    }
}

/// Exits (WASI `proc_exit`) with `double(21)`; export `fail` calls `test::fail`.
const GUEST: &str = r#"(module
  (import "test" "double" (func $double (param i32) (result i32)))
  (import "test" "fail" (func $fail))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (call $double (i32.const 21))))
  (func (export "fail") (call $fail)))"#;

fn context(func: Option<&str>) -> GuestContext {
    GuestContext {
        args: vec!["/guest.wat".into()],
        env: Vec::new(),
        cwd: "/".into(),
        func: func.map(str::to_string),
        memory_limit: None,
        grants: Default::default(),
    }
}

fn load<E: WasmEngine>(engine: &E) -> E::Module {
    let artifact = engine.precompile(GUEST.as_bytes()).unwrap();
    engine.load(artifact).unwrap()
}

#[test]
fn core_modules_call_the_host_functions() {
    let engine = WasmtimeWith::<Double>::new().unwrap();
    assert_eq!(<WasmtimeWith<Double> as WasmEngine>::NAME, "double");
    let module = load(&engine);
    assert_eq!(engine.run(&module, &context(None)).unwrap(), 42);
}

#[test]
fn an_error_from_a_host_function_traps_the_guest() {
    let engine = WasmtimeWith::<Double>::new().unwrap();
    let module = load(&engine);
    match engine.run(&module, &context(Some("fail"))) {
        Err(EngineError::Trap(message)) => {
            assert!(message.contains("the host function refused"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn the_plain_engine_does_not_link_them() {
    let engine = Wasmtime::new().unwrap();
    let module = load(&engine);
    let error = engine.run(&module, &context(None)).unwrap_err().to_string();
    assert!(error.contains("test::double"), "{error}");
}

#[test]
fn artifacts_are_shared_with_the_plain_engine() {
    let plain = Wasmtime::new().unwrap();
    let extended = WasmtimeWith::<Double>::new().unwrap();
    assert_eq!(plain.compatibility_key(), extended.compatibility_key());
    let module = extended
        .load(plain.precompile(GUEST.as_bytes()).unwrap())
        .unwrap();
    assert_eq!(extended.run(&module, &context(None)).unwrap(), 42);
}
