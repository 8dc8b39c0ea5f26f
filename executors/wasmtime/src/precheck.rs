//! What the compile process checks before compiling a module for wasmtime, from its import and
//! export sections alone: a module that could never be linked or started is refused in a
//! moment instead of after a compile of tens of seconds.
//! - core modules: the entry export, and imports only from `wasi_snapshot_preview1` (all the
//!   linker gives them; an engine with host functions of its own checks the entry only);
//! - components: a `wasi:cli/run` or `wasi:http/incoming-handler` export, and imports only of
//!   the WASI 0.2 interfaces wasmtime links (cli, clocks, filesystem, io, random, sockets, http).

use wasmparser::{ComponentTypeRef, Parser, Payload};
use wasmpod_runtime::module_exports::check_core_entry;
use wasmpod_runtime::EngineError;

use crate::component::{CLI_RUN, HTTP_HANDLER};

/// The only module core modules may import from.
const CORE_IMPORTS: &str = "wasi_snapshot_preview1";
/// WASI 0.2 packages a component may import (`wasi:<package>/<interface>@0.2.x`).
const COMPONENT_PACKAGES: &[&str] = &[
    "cli",
    "clocks",
    "filesystem",
    "io",
    "random",
    "sockets",
    "http",
];
/// Import names shown in an error.
const LISTED: usize = 5;

/// Checks `source` as [`crate::Wasmtime`] will link and start it.
pub fn check(
    source: &[u8],
    func: Option<&str>,
    core_host_functions: bool,
) -> Result<(), EngineError> {
    if crate::is_component(source) {
        return check_component(source, func);
    }
    check_core_entry(source, func)?;
    if core_host_functions {
        return Ok(());
    }
    let Some(imports) = core_imports(source) else {
        return Ok(());
    };
    let foreign: Vec<String> = imports
        .into_iter()
        .filter(|(module, _)| module != CORE_IMPORTS)
        .map(|(module, name)| format!("{module}::{name}"))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(EngineError::Other(format!(
        "imports {} that wasmtime does not provide (core modules get WASI preview1, \
         `{CORE_IMPORTS}`, only)",
        listed(&foreign)
    )))
}

/// `(module, name)` of every import of a core module; `None` when it does not parse.
fn core_imports(source: &[u8]) -> Option<Vec<(String, String)>> {
    let mut imports = Vec::new();
    for payload in Parser::new(0).parse_all(source) {
        match payload.ok()? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.ok()?;
                    imports.push((import.module.to_string(), import.name.to_string()));
                }
                return Some(imports);
            }
            Payload::CodeSectionStart { .. } | Payload::End(_) => return Some(imports),
            _ => {}
        }
    }
    Some(imports)
}

fn check_component(source: &[u8], func: Option<&str>) -> Result<(), EngineError> {
    if let Some(func) = func {
        return Err(EngineError::Other(format!(
            "`#{func}`: a component runs its wasi:cli/run export or serves its \
             wasi:http/incoming-handler export; `#func` applies to core modules"
        )));
    }
    let Some((imports, exports)) = component_names(source) else {
        return Ok(());
    };
    if !exports
        .iter()
        .any(|e| e.starts_with(CLI_RUN) || e.starts_with(HTTP_HANDLER))
    {
        return Err(EngineError::MissingExport {
            func: format!(
                "{CLI_RUN}.x (a command component) or {HTTP_HANDLER}.x (an HTTP proxy component)"
            ),
            available: wasmpod_runtime::engine::export_list(&exports),
        });
    }
    let foreign: Vec<String> = imports.into_iter().filter(|i| !provided(i)).collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(EngineError::Other(format!(
        "imports {} that wasmtime does not provide (components get the WASI 0.2 interfaces \
         of wasi:{})",
        listed(&foreign),
        COMPONENT_PACKAGES.join(", wasi:")
    )))
}

/// Whether wasmtime links the component import `name`.
fn provided(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("wasi:") else {
        return false;
    };
    let Some((package, version)) = rest.split_once('@') else {
        return false;
    };
    let package = package.split('/').next().unwrap_or_default();
    COMPONENT_PACKAGES.contains(&package) && version.starts_with("0.2.")
}

/// The top-level import and export names of a component (not of the modules and components
/// nested in it); `None` when it does not parse.
fn component_names(source: &[u8]) -> Option<(Vec<String>, Vec<String>)> {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(source) {
        match payload.ok()? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth == 0 => break,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.ok()?;
                    // Type imports name no interface to link.
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export.ok()?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Some((imports, exports))
}

fn listed(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(LISTED)
        .map(|n| format!("`{}`", n.chars().take(80).collect::<String>()))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        text.push_str(&format!(" and {} more", names.len() - LISTED));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/wasm")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn fixtures_pass() {
        for name in [
            "hello.wasm",
            "testprog.wasm",
            "hello.component.wasm",
            "http.component.wasm",
        ] {
            check(&fixture(name), None, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn foreign_core_imports_are_refused() {
        // (module (import "env" "f" (func)) (func (export "_start")))
        let module = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x02\x09\x01\x03env\x01f\0\0\
                       \x03\x02\x01\0\x07\x0a\x01\x06_start\0\x01\x0a\x04\x01\x02\0\x0b";
        let err = check(module, None, false).unwrap_err().to_string();
        assert!(
            err.starts_with("imports `env::f` that wasmtime does not provide"),
            "{err}"
        );
        assert!(check(module, None, true).is_ok());
    }

    #[test]
    fn component_rules() {
        assert!(provided("wasi:cli/environment@0.2.3"));
        assert!(provided("wasi:http/outgoing-handler@0.2.0"));
        assert!(!provided("wasi:cli/environment@0.3.0"));
        assert!(!provided("fermyon:spin/key-value@2.0.0"));
        assert!(!provided("wasi:keyvalue/store@0.2.0-draft"));
        let err = check(&fixture("hello.component.wasm"), Some("main"), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`#main`"), "{err}");
    }
}
