//! What a module exports, read from its export section alone: the compile process refuses a
//! core module without its entry before compiling it (a large module would otherwise be
//! compiled in full, tens of seconds, only to be refused).

use wasmparser::{ExternalKind, Parser, Payload};

use crate::engine::{check_function_export, EngineError};

/// Checks that a core module exports `func` (or `_start`) as a function. Anything that is not a
/// core module binary, or does not parse up to its code, passes: the compiler names the problem.
pub fn check_core_entry(source: &[u8], func: Option<&str>) -> Result<(), EngineError> {
    match core_function_exports(source) {
        Some(exports) => check_function_export(exports, func),
        None => Ok(()),
    }
}

/// The function exports of a core module binary (`None` for text, components and what does not
/// parse). Stops at the code section: exports come before it.
pub fn core_function_exports(source: &[u8]) -> Option<Vec<String>> {
    if !source.starts_with(b"\0asm") || source.get(4..8) != Some(&[1, 0, 0, 0]) {
        return None;
    }
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(source) {
        match payload.ok()? {
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.ok()?;
                    if export.kind == ExternalKind::Func {
                        exports.push(export.name.to_string());
                    }
                }
                return Some(exports);
            }
            Payload::CodeSectionStart { .. } | Payload::End(_) => return Some(exports),
            _ => {}
        }
    }
    Some(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(module (func) (export "_initialize" (func 0)) (memory 1))` and the same with `_start`.
    fn module(entry: &str) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type () -> ()
        m.extend_from_slice(&[3, 2, 1, 0]); // one function of type 0
        let mut export = vec![1, entry.len() as u8];
        export.extend_from_slice(entry.as_bytes());
        export.extend_from_slice(&[0, 0]); // func 0
        m.push(7);
        m.push(export.len() as u8);
        m.extend_from_slice(&export);
        m.extend_from_slice(&[10, 4, 1, 2, 0, 0x0b]); // one empty body
        m
    }

    #[test]
    fn entries() {
        assert!(check_core_entry(&module("_start"), None).is_ok());
        let err = check_core_entry(&module("_initialize"), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "export `_start` not found in module (function exports: _initialize)"
        );
        assert!(check_core_entry(&module("_initialize"), Some("_initialize")).is_ok());
        // Not ours to judge: text, components, garbage.
        assert!(check_core_entry(b"(module)", None).is_ok());
        assert!(check_core_entry(b"\0asm\x0d\0\x01\0", None).is_ok());
        assert!(check_core_entry(b"\0asm\x01\0\0\0\xff\xff", None).is_ok());
    }
}
