//! Errors returned by the image builder.

use std::path::PathBuf;

/// Everything that can go wrong while building an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A path inside the image is empty, contains `..`, or is otherwise unusable.
    #[error("invalid path in image: {0:?}")]
    InvalidPath(String),

    /// An entry needs a parent directory, but another entry of a different kind sits there.
    #[error("{path:?} needs {parent:?} to be a directory, but it was added as a {kind}")]
    NotADirectory {
        path: String,
        parent: String,
        kind: &'static str,
    },

    /// A host file could not be read.
    #[error("cannot read host file {path}")]
    HostFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The busybox binary could not be run or printed something unexpected.
    #[error("busybox {path}: {reason}")]
    Busybox { path: PathBuf, reason: String },

    /// Writing the layer or the output archive failed.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Building an in-memory archive failed.
    #[error("cannot build archive")]
    Archive(#[source] std::io::Error),

    /// A wasm image needs at least one wasm layer.
    #[error("a wasm image needs at least one wasm layer")]
    NoWasmLayer,

    /// The CNCF wasm artifact has only wasm layers: no place for data files.
    #[error("a wasm artifact holds only wasm layers: data files need the image layout")]
    ArtifactWithFiles,

    /// A component layer could not be parsed for its world (imports and exports).
    #[error("component {title}: {reason}")]
    Component { title: String, reason: String },

    /// Serialising an image JSON document failed.
    #[error("cannot serialise {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}
