//! Why the wasm layer of a container's image could not be used.

use wasmpod_runtime::ErrorKind;

/// Errors reading an image's wasm layer from containerd.
#[derive(Debug, thiserror::Error)]
pub enum ImageLayerError {
    #[error("cannot reach containerd at {address} to read the container's image: {reason}")]
    Connect { address: String, reason: String },
    #[error("containerd {call}: {code:?}: {message}")]
    Rpc {
        call: &'static str,
        code: containerd_client::tonic::Code,
        message: String,
    },
    #[error("no answer from containerd within {seconds} s while reading the container's image")]
    Timeout { seconds: u64 },
    #[error("image {image} of container {id} is not in containerd namespace {namespace}")]
    ImageNotFound {
        image: String,
        id: String,
        namespace: String,
    },
    #[error(
        "{what} {digest} of image {image} is not in containerd's content store (import wasm \
         images with `ctr images import --all-platforms`)"
    )]
    BlobMissing {
        what: &'static str,
        digest: String,
        image: String,
    },
    #[error("{what} {digest} is not valid JSON: {reason}")]
    BadDocument {
        what: &'static str,
        digest: String,
        reason: String,
    },
    #[error("image {image}: nested image indexes go deeper than {max} levels")]
    TooDeep { image: String, max: usize },
    #[error(
        "image {image}: image index {digest} has {entries} entries, more than the {max} allowed \
         (index fan-out)"
    )]
    IndexTooWide {
        image: String,
        digest: String,
        entries: usize,
        max: usize,
    },
    #[error("image {image}: more than {max} image indexes to read (index fan-out)")]
    TooManyIndexes { image: String, max: usize },
    #[error(
        "image {image} is a wasm artifact (application/vnd.wasm.config.v0+json) without a wasm \
         layer (layer media types: {media_types:?})"
    )]
    NoWasmLayer {
        image: String,
        media_types: Vec<String>,
    },
    #[error(
        "image {image} has {} wasm layers ({}) and args[0] {arg0} names none of them (a layer \
         is chosen by its org.opencontainers.image.title)",
        titles.len(),
        titles.join(", ")
    )]
    SeveralModules {
        image: String,
        arg0: String,
        titles: Vec<String>,
    },
    #[error("{what} {digest}: only sha256 digests are supported")]
    UnsupportedDigest { what: &'static str, digest: String },
    #[error("{what} {digest} is {size} bytes, more than the {max} bytes allowed")]
    TooLarge {
        what: &'static str,
        digest: String,
        size: u64,
        max: u64,
    },
    #[error("{what} {digest}: containerd sent {actual} bytes, the descriptor says {expected}")]
    SizeMismatch {
        what: &'static str,
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} {digest}: content has digest sha256:{actual}, refusing it")]
    DigestMismatch {
        what: &'static str,
        digest: String,
        actual: String,
    },
}

impl ImageLayerError {
    /// How the shim reports it: containerd out of reach is unavailable, its failed call
    /// internal, and everything about the image itself (missing, malformed, too large, no
    /// usable layer) the container's bad argument.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } => ErrorKind::Unavailable,
            Self::Rpc { .. } => ErrorKind::Internal,
            _ => ErrorKind::InvalidArgument,
        }
    }
}
