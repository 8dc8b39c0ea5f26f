//! An engine of your own on wasmpod: the wasmtime adapter plus one host function,
//! `wasmpod_demo::log(ptr: i32, len: i32)`, which writes the guest's UTF-8 bytes at
//! `ptr..ptr+len` to the container's stderr as one line prefixed with `[wasmpod_demo] `.
//!
//! `src/main.rs` turns it into the shim `containerd-shim-customhost-v1`; the guest
//! `tests/fixtures/wat/custom-log.wat` calls it. See the README, "Build your own shim".

use std::io::Write;

use wasmpod_wasmtime::{CoreState, HostFunctions, WasmtimeWith};
use wasmtime::{Caller, Linker};

/// The engine: wasmtime with [`DemoLog`]. `wasmpod_shim::run::<CustomHost>()` is the shim.
pub type CustomHost = WasmtimeWith<DemoLog>;

/// The host functions of the `wasmpod_demo` import module.
pub struct DemoLog;

/// What precedes every line the guest logs.
pub const PREFIX: &str = "[wasmpod_demo] ";

impl HostFunctions for DemoLog {
    const NAME: &'static str = "customhost";

    fn add_to_linker(linker: &mut Linker<CoreState>) -> wasmtime::Result<()> {
        linker.func_wrap("wasmpod_demo", "log", log)?;
        Ok(())
    }
}

/// `wasmpod_demo::log`: the guest's bytes, checked, as one line on stderr.
fn log(mut caller: Caller<'_, CoreState>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let memory = caller
        .get_export("memory")
        .and_then(|export| export.into_memory())
        .ok_or_else(|| wasmtime::Error::msg("wasmpod_demo::log: the module exports no memory"))?;
    let line = log_line(memory.data(&caller), ptr, len)?;
    std::io::stderr().lock().write_all(line.as_bytes())?;
    Ok(())
}

/// The line for the guest's `len` bytes at `ptr` of `memory`; an error when they are out of
/// bounds or not UTF-8 (it traps the guest).
pub fn log_line(memory: &[u8], ptr: i32, len: i32) -> wasmtime::Result<String> {
    // wasm passes i32; pointers and lengths are unsigned.
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    let bytes = start
        .checked_add(len)
        .and_then(|end| memory.get(start..end))
        .ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "wasmpod_demo::log: bytes {start}..{start}+{len} are outside the guest's memory ({} bytes)",
                memory.len()
            ))
        })?;
    let text = std::str::from_utf8(bytes)
        .map_err(|e| wasmtime::Error::msg(format!("wasmpod_demo::log: not UTF-8: {e}")))?;
    Ok(format!("{PREFIX}{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_prefixed_text() {
        let memory = b"..hello..";
        assert_eq!(log_line(memory, 2, 5).unwrap(), "[wasmpod_demo] hello\n");
        assert_eq!(log_line(memory, 9, 0).unwrap(), "[wasmpod_demo] \n");
    }

    #[test]
    fn bytes_outside_memory_or_not_utf8_are_refused() {
        let memory = b"abc\xff";
        let outside = log_line(memory, 2, 5).unwrap_err().to_string();
        assert!(
            outside.contains("outside the guest's memory (4 bytes)"),
            "{outside}"
        );
        assert!(log_line(memory, -1, 1).is_err());
        assert!(log_line(memory, 1, -1).is_err());
        let not_utf8 = log_line(memory, 0, 4).unwrap_err().to_string();
        assert!(not_utf8.contains("not UTF-8"), "{not_utf8}");
    }
}
