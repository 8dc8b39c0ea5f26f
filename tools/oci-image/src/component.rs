//! The world of a WASI 0.2 component (its top-level import and export names), which the CNCF
//! wasm artifact config lists for `wasip2` artifacts.

use wasmparser::{Parser, Payload};

use crate::spec::ComponentWorld;
use crate::ImageError;

/// Whether `bytes` carry a component header (`\0asm` with a layer/version other than core's 1).
pub(crate) fn is_component(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm") && bytes.get(4..8).is_some_and(|v| v != [1, 0, 0, 0])
}

/// The names a component imports and exports at its top level (nested modules and components
/// are skipped), in binary order.
pub(crate) fn world(title: &str, bytes: &[u8]) -> Result<ComponentWorld, ImageError> {
    let invalid = |reason: String| ImageError::Component {
        title: title.to_string(),
        reason,
    };
    if !is_component(bytes) {
        return Err(invalid("not a component (no component header)".to_string()));
    }
    let mut world = ComponentWorld {
        exports: Vec::new(),
        imports: Vec::new(),
    };
    // Every nested module or component starts with its own Version payload and ends with End.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| invalid(e.to_string()))? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| invalid(e.to_string()))?;
                    world.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| invalid(e.to_string()))?;
                    world.exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(world)
}
