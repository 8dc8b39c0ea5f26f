//! Writes single-layer OCI image-layout tarballs that `ctr images import` accepts,
//! without any registry.
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
mod error;
mod layer;
mod layout;
mod path;
mod spec;

pub use builder::{ImageBuilder, DEFAULT_DIR_MODE};
pub use busybox::{busybox_image, DEFAULT_PATH};
pub use error::ImageError;

/// The manifest digest of a written image, `sha256:<hex>`.
pub type ImageDigest = String;
