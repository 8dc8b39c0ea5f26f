//! Wasm layers of a container's image: when the image holds a wasm layer
//! (`application/wasm`, a component layer, a CNCF wasm artifact), the shim reads it from
//! containerd's content store, checked against its digest, and the runtime runs it instead of
//! looking at args[0] in the rootfs.
//!
//! The shim is synchronous; this is its only async code. The tokio runtime (one worker thread)
//! is created on first use, long after the zygote was forked while the process had one thread,
//! and lives as long as the shim, so requests add no threads.

mod client;
mod error;
mod select;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasmpod_runtime::detect::ImageModule;
use wasmpod_runtime::spec;

pub use error::ImageLayerError;

/// The whole lookup (connect, three to five calls, the layer's bytes) must finish in this.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);
const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

pub struct ImageLayers {
    /// containerd's gRPC socket (the shim's `-address`); empty when started without one.
    address: String,
    namespace: String,
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
}

impl ImageLayers {
    pub fn new(address: &str, namespace: &str) -> Self {
        ImageLayers {
            address: address.to_string(),
            namespace: namespace.to_string(),
            runtime: OnceLock::new(),
        }
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, ImageLayerError> {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(1)
                .thread_name("containerd-client")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        });
        runtime.as_ref().map_err(|reason| ImageLayerError::Connect {
            address: self.address.clone(),
            reason: format!("cannot start the client runtime: {reason}"),
        })
    }

    /// The wasm module to run for container `id` (bundle `bundle`), or `None` when its image
    /// has no wasm layer: then the rootfs decides. The pod sandbox is never looked up.
    pub fn module_for(
        &self,
        id: &str,
        bundle: &Path,
        supports_components: bool,
    ) -> Result<Option<ImageModule>, ImageLayerError> {
        if self.address.is_empty() {
            return Ok(None);
        }
        // A bad config.json is reported by create, with its cause.
        let Ok(spec) = spec::load(bundle) else {
            return Ok(None);
        };
        if spec::annotation(&spec, CONTAINER_TYPE) == Some("sandbox") {
            return Ok(None);
        }
        let arg0 = spec::args(&spec).first().map(String::as_str).unwrap_or("");
        let (arg0_path, _) = spec::split_entry(arg0);
        let started = Instant::now();
        let lookup = async {
            let mut lookup = client::Lookup::connect(&self.address, &self.namespace).await?;
            lookup.module(id, arg0_path, supports_components).await
        };
        let result = self
            .runtime()?
            .block_on(async { tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await })
            .map_err(|_| ImageLayerError::Timeout {
                seconds: LOOKUP_TIMEOUT.as_secs(),
            })?;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(Some(module)) => tracing::info!(
                id,
                origin = %module.origin,
                bytes = module.bytes.len(),
                elapsed_ms,
                "wasm layer read from containerd's content store"
            ),
            Ok(None) => tracing::debug!(id, elapsed_ms, "image has no wasm layer"),
            Err(e) => tracing::warn!(id, error = %e, elapsed_ms, "reading the image's wasm layer"),
        }
        result
    }
}
