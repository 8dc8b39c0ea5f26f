//! Writes OCI image-layout tarballs that `ctr images import` accepts, without any registry:
//! single-layer rootfs images ([`ImageBuilder`]) and wasm images ([`WasmImageBuilder`]).
//!
//! ```no_run
//! use wasmpod_oci_image::ImageBuilder;
//! # fn main() -> Result<(), wasmpod_oci_image::ImageError> {
//! let digest = ImageBuilder::new("docker.io/wasmpod/hello:latest")
//!     .add_file("/hello.wasm", b"\0asm".to_vec(), 0o755)
//!     .entrypoint(vec!["/hello.wasm".to_string()])
//!     .write_tar(std::path::Path::new("/tmp/hello.tar"))?;
//! println!("{digest}");
//! # Ok(())
//! # }
//! ```

mod builder;
mod busybox;
mod component;
mod error;
mod layer;
mod layout;
mod path;
mod spec;
mod wasm;

pub use builder::{ImageBuilder, DEFAULT_DIR_MODE};
pub use busybox::{busybox_image, DEFAULT_PATH};
pub use error::ImageError;
pub use spec::{
    ANNOTATION_TITLE, MEDIA_WASM, MEDIA_WASM_ARTIFACT_CONFIG, MEDIA_WASM_COMPONENT, OS_WASIP1,
    OS_WASIP2, WASM_ARCHITECTURE,
};
pub use wasm::{WasmImageBuilder, WasmLayout};

/// The manifest digest of a written image, `sha256:<hex>`.
pub type ImageDigest = String;
