//! Deciding whether a container runs as wasm or as a native binary, explicitly and with a
//! reason that goes to the log. Order: a wasm layer of the container's image (read by the shim,
//! an [`ImageModule`]), then annotations and the content of `args[0]` in the rootfs.

use oci_spec::runtime::Spec;

use crate::resolve::{find_program, Program, ResolveError, View};
use crate::spec;

const WASM_MAGIC: &[u8] = b"\0asm";
const CORE_VERSION: &[u8] = &[1, 0, 0, 0];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a container's program could not be classified; each names the file (a path inside the
/// container) and what was found.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages show
pub enum DetectError {
    /// `args[0]` could not be found or opened safely in the rootfs.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Neither ELF, `#!` nor wasm.
    #[error("{path}: not ELF, script or wasm: first bytes {head}")]
    UnknownFormat { path: String, head: String },
    /// A `.wasm` file whose magic bytes are wrong.
    #[error("{path}: malformed wasm module: bad magic bytes {head} (expected 00 61 73 6d)")]
    BadMagic { path: String, head: String },
    /// An annotation asked for wasm, but `args[0]` is native.
    #[error("{path}: annotation {annotation} asks for wasm, but the file is a native program")]
    NotWasm { path: String, annotation: String },
    /// `program#func` on a native program.
    #[error("{path}: the `#{func}` entrypoint syntax selects a wasm export, but this is a native program")]
    FuncOnNative { path: String, func: String },
    /// A native program without an execute bit.
    #[error("{path} is not executable")]
    NotExecutable { path: String },
    /// An image's wasm layer whose bytes are not wasm.
    #[error("{origin} is not wasm: first bytes {head} (expected 00 61 73 6d)")]
    NotWasmLayer { origin: String, head: String },
}

/// A wasm module taken from a wasm layer of the container's image, already read from
/// containerd's content store and checked against its digest by the shim.
#[derive(Debug, Clone)]
pub struct ImageModule {
    /// Where it came from, for the log and errors: `image layer sha256:… (application/wasm)`.
    pub origin: String,
    /// The layer's bytes.
    pub bytes: Vec<u8>,
}

/// The kind of a wasm program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WasmFormat {
    /// A core module (`\0asm`, version 1).
    Binary,
    /// A WASI 0.2 component (`\0asm`, component layer): only engines with component support.
    Component,
    /// Wasm text (`.wat`).
    Text,
}

/// Where a wasm module's bytes are. Neither is read whole by the shim: the compile path copies
/// them, bounded, into a sealed buffer for the compile process (see [`crate::compile`]).
#[derive(Debug)]
pub(crate) enum ModuleSource<'a> {
    /// The program file in the rootfs, opened safely by [`crate::resolve`].
    File(std::fs::File),
    /// A wasm layer of the image, already read (bounded) and digest-checked by the shim.
    Bytes(&'a [u8]),
}

/// What runs: a wasm module or a native program.
#[derive(Debug)]
pub(crate) enum Workload<'a> {
    Wasm {
        /// Module path inside the container, as given in args[0] (without `#func`).
        path: String,
        /// Export to call instead of `_start`.
        func: Option<String>,
        format: WasmFormat,
        source: ModuleSource<'a>,
    },
    Native {
        path: String,
    },
}

/// The detected workload and why.
#[derive(Debug)]
pub(crate) struct Decision<'a> {
    pub workload: Workload<'a>,
    /// Why this kind was chosen, for the log.
    pub reason: String,
}

/// What the annotations ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hint {
    /// Must be wasm.
    Wasm(String),
    /// Wasm when args[0] ends in `.wasm` / `.wat`, otherwise look at the content.
    Smart(String),
    None,
}

fn hint(spec: &Spec) -> Hint {
    for key in ["run.oci.handler", "module.wasm.image/variant"] {
        match spec::annotation(spec, key) {
            Some(v @ ("wasm" | "compat")) => return Hint::Wasm(format!("{key}={v}")),
            Some(v @ ("wasm-smart" | "compat-smart")) => return Hint::Smart(format!("{key}={v}")),
            _ => {}
        }
    }
    Hint::None
}

fn has_wasm_extension(path: &str) -> bool {
    path.ends_with(".wasm") || path.ends_with(".wat")
}

fn hex_head(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Classifies the spec's args[0] as the container sees it (annotations, then the file's content).
pub(crate) fn detect(spec: &Spec, view: &View) -> Result<Decision<'static>, DetectError> {
    let arg0 = spec::args(spec).first().map(String::as_str).unwrap_or("");
    let (path, func) = spec::split_entry(arg0);
    let path_var = spec::env_var(spec, "PATH").unwrap_or(DEFAULT_PATH);
    let program = find_program(view, path, path_var)?;

    let (wanted, why) = match hint(spec) {
        Hint::Wasm(a) => (Some(true), a),
        Hint::Smart(a) if has_wasm_extension(path) => {
            (Some(true), format!("{a} and a .wasm/.wat path"))
        }
        Hint::Smart(a) => (None, format!("{a} but no .wasm/.wat path")),
        Hint::None => (None, "no wasm annotation".to_string()),
    };
    let decision = by_content(program, func, wanted.is_some())?;
    let reason = format!("{why}; {}", decision.reason);
    if let (Some(true), Workload::Native { path }) = (wanted, &decision.workload) {
        return Err(DetectError::NotWasm {
            path: path.clone(),
            annotation: why,
        });
    }
    Ok(Decision { reason, ..decision })
}

/// The workload of a container whose image holds a wasm layer: that layer runs, whatever the
/// rootfs holds. args[0] (without `#func`) stays the guest's argv[0], and `#func` picks an
/// export, as for modules in the rootfs.
pub(crate) fn from_image<'a>(
    spec: &Spec,
    module: &'a ImageModule,
) -> Result<Decision<'a>, DetectError> {
    let arg0 = spec::args(spec).first().map(String::as_str).unwrap_or("");
    let (path, func) = spec::split_entry(arg0);
    let head = module.bytes.get(..8).unwrap_or(&module.bytes);
    if !head.starts_with(WASM_MAGIC) {
        return Err(DetectError::NotWasmLayer {
            origin: module.origin.clone(),
            head: if head.is_empty() {
                "(none: the layer is empty)".to_string()
            } else {
                hex_head(head)
            },
        });
    }
    let (format, kind) = if head.get(4..8) == Some(CORE_VERSION) {
        (WasmFormat::Binary, "core module")
    } else {
        (WasmFormat::Component, "component")
    };
    Ok(Decision {
        reason: format!("{} ({kind}), argv[0] {path}", module.origin),
        workload: Workload::Wasm {
            path: path.to_string(),
            func: func.map(str::to_string),
            format,
            source: ModuleSource::Bytes(&module.bytes),
        },
    })
}

fn by_content(
    program: Program,
    func: Option<&str>,
    wasm_wanted: bool,
) -> Result<Decision<'static>, DetectError> {
    let head = program.head(8)?;
    let path = program.path.clone();
    let wasm_format = if head.starts_with(WASM_MAGIC) {
        Some(if head.get(4..8) != Some(CORE_VERSION) {
            (WasmFormat::Component, "starts with \\0asm (component)")
        } else {
            (WasmFormat::Binary, "starts with \\0asm (core module)")
        })
    } else if path.ends_with(".wasm") {
        return Err(DetectError::BadMagic {
            path,
            head: hex_head(&head),
        });
    } else if path.ends_with(".wat") {
        Some((WasmFormat::Text, "is wasm text (.wat)"))
    } else {
        None
    };
    if let Some((format, what)) = wasm_format {
        // Before the module is read (a native program may be of any size).
        program.check_size()?;
        return Ok(Decision {
            reason: format!("{path} {what}"),
            workload: Workload::Wasm {
                path,
                func: func.map(str::to_string),
                format,
                source: ModuleSource::File(program.file),
            },
        });
    }
    let native_reason = if head.starts_with(b"\x7fELF") {
        "is an ELF binary"
    } else if head.starts_with(b"#!") {
        "is a #! script"
    } else {
        return Err(DetectError::UnknownFormat {
            path,
            head: hex_head(&head),
        });
    };
    if let Some(func) = func {
        return Err(DetectError::FuncOnNative {
            path,
            func: func.to_string(),
        });
    }
    if !wasm_wanted && !program.is_executable() {
        return Err(DetectError::NotExecutable { path });
    }
    Ok(Decision {
        reason: format!("{path} {native_reason}: native execve"),
        workload: Workload::Native { path },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    fn spec_with(args: &[&str], annotations: &[(&str, &str)]) -> Spec {
        let mut spec = spec::example();
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        p.set_env(Some(vec!["PATH=/bin".into()]));
        spec.set_process(Some(p));
        let a: HashMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        spec.set_annotations(Some(a));
        spec
    }

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, bytes: &[u8], mode: u32| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        put("bin/tool", b"\x7fELF\x02\x01\x01\x00", 0o755);
        put("bin/script", b"#!/bin/sh\necho\n", 0o755);
        put("app.wasm", b"\0asm\x01\0\0\0", 0o644);
        put("comp.wasm", b"\0asm\x0d\0\x01\0", 0o644);
        put("bad.wasm", b"\0asX garbage", 0o644);
        put("mod.wat", b"(module)", 0o644);
        put("data.txt", b"plain text", 0o644);
        dir
    }

    fn decide(args: &[&str], ann: &[(&str, &str)]) -> Result<Decision<'static>, DetectError> {
        let root = rootfs();
        detect(&spec_with(args, ann), &View::rootfs(root.path()))
    }

    #[test]
    fn content_decides_without_annotations() {
        assert!(matches!(
            decide(&["tool"], &[]).unwrap().workload,
            Workload::Native { .. }
        ));
        assert!(matches!(
            decide(&["/bin/script"], &[]).unwrap().workload,
            Workload::Native { .. }
        ));
        let d = decide(&["/app.wasm#greet"], &[]).unwrap();
        match d.workload {
            Workload::Wasm {
                path, func, format, ..
            } => {
                assert_eq!(
                    (path.as_str(), func.as_deref(), format),
                    ("/app.wasm", Some("greet"), WasmFormat::Binary)
                );
            }
            w => panic!("{w:?}"),
        }
        assert!(matches!(
            decide(&["/comp.wasm"], &[]).unwrap().workload,
            Workload::Wasm {
                format: WasmFormat::Component,
                ..
            }
        ));
        assert!(matches!(
            decide(&["/mod.wat"], &[]).unwrap().workload,
            Workload::Wasm {
                format: WasmFormat::Text,
                ..
            }
        ));
    }

    #[test]
    fn bad_inputs_name_the_cause() {
        let e = decide(&["/bad.wasm"], &[]).unwrap_err().to_string();
        assert!(e.contains("bad magic bytes 00 61 73 58"), "{e}");
        let e = decide(&["/data.txt"], &[]).unwrap_err().to_string();
        assert!(
            e.contains("not ELF, script or wasm: first bytes 70 6c 61 69"),
            "{e}"
        );
        let e = decide(&["/nope.wasm"], &[]).unwrap_err().to_string();
        assert!(e.contains("not found in rootfs"), "{e}");
        let e = decide(&["tool#main"], &[]).unwrap_err().to_string();
        assert!(e.contains("native program"), "{e}");
    }

    #[test]
    fn image_layer_wins_over_the_rootfs() {
        let module = |bytes: &[u8]| ImageModule {
            origin: "image layer sha256:ab (application/wasm)".to_string(),
            bytes: bytes.to_vec(),
        };
        let spec = spec_with(&["/bin/tool#greet"], &[]);
        let core = module(b"\0asm\x01\0\0\0");
        let d = from_image(&spec, &core).unwrap();
        assert!(
            d.reason.starts_with("image layer sha256:ab"),
            "{}",
            d.reason
        );
        match d.workload {
            Workload::Wasm {
                path, func, format, ..
            } => assert_eq!(
                (path.as_str(), func.as_deref(), format),
                ("/bin/tool", Some("greet"), WasmFormat::Binary)
            ),
            w => panic!("{w:?}"),
        }
        let component = module(b"\0asm\x0d\0\x01\0");
        let d = from_image(&spec, &component).unwrap();
        assert!(matches!(
            d.workload,
            Workload::Wasm {
                format: WasmFormat::Component,
                ..
            }
        ));
        let e = from_image(&spec, &module(b"#!/bin/sh\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "image layer sha256:ab (application/wasm) is not wasm: first bytes \
             23 21 2f 62 69 6e 2f 73 (expected 00 61 73 6d)"
        );
        let e = from_image(&spec, &module(b"")).unwrap_err().to_string();
        assert!(e.contains("first bytes (none: the layer is empty)"), "{e}");
    }

    #[test]
    fn annotations() {
        let e = decide(&["tool"], &[("run.oci.handler", "wasm")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("asks for wasm"), "{e}");
        let d = decide(&["tool"], &[("module.wasm.image/variant", "compat-smart")]).unwrap();
        assert!(
            matches!(d.workload, Workload::Native { .. }),
            "{}",
            d.reason
        );
        assert!(d.reason.contains("no .wasm/.wat path"), "{}", d.reason);
        let d = decide(&["/app.wasm"], &[("run.oci.handler", "wasm-smart")]).unwrap();
        assert!(matches!(d.workload, Workload::Wasm { .. }));
    }
}
