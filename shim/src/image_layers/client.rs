//! containerd's gRPC API as the image lookup needs it: Containers.Get, Images.Get and
//! Content.Read, every blob checked against its descriptor's size and sha256.

use std::collections::VecDeque;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetContainerRequest, GetImageRequest, ReadContentRequest};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};
use sha2::{Digest, Sha256};
use wasmpod_runtime::detect::ImageModule;
// Wasm layers larger than this are refused, as modules in a rootfs: the shim holds the bytes.
use wasmpod_runtime::resolve::max_module_bytes;

use super::error::ImageLayerError;
use super::select::{self, choose_in_index, choose_layer, Descriptor, IndexChoice};

/// Manifests, indexes and configs larger than this are refused (containerd's own limit).
const MAX_DOCUMENT_BYTES: u64 = 4 << 20;
/// Index levels followed before giving up (a layout's index.json wrapping an image index).
const MAX_INDEX_DEPTH: usize = 3;
/// Entries of one image index: real multi-platform indexes have a few dozen at most.
const MAX_INDEX_ENTRIES: usize = 1024;
/// Image indexes read for one container, nested ones included (bounds the fan-out).
const MAX_INDEX_DOCUMENTS: usize = 16;

/// One lookup: a connection to containerd in the container's namespace.
pub struct Lookup {
    channel: Channel,
    namespace: String,
    /// The image name, once known (for errors).
    image: String,
}

impl Lookup {
    pub async fn connect(address: &str, namespace: &str) -> Result<Self, ImageLayerError> {
        let path = address.strip_prefix("unix://").unwrap_or(address);
        let channel =
            containerd_client::connect(path)
                .await
                .map_err(|e| ImageLayerError::Connect {
                    address: address.to_string(),
                    reason: error_chain(&e),
                })?;
        Ok(Lookup {
            channel,
            namespace: namespace.to_string(),
            image: String::new(),
        })
    }

    fn request<T>(&self, message: T) -> Result<Request<T>, ImageLayerError> {
        let mut request = Request::new(message);
        let namespace = self.namespace.parse().map_err(|_| ImageLayerError::Rpc {
            call: "namespace header",
            code: Code::InvalidArgument,
            message: format!("namespace {:?} is not a valid header value", self.namespace),
        })?;
        request
            .metadata_mut()
            .insert("containerd-namespace", namespace);
        Ok(request)
    }

    /// The wasm module of container `id`'s image; `None` when the container has no image or
    /// the image holds no wasm layer (then the rootfs decides, as for any image).
    pub async fn module(
        &mut self,
        id: &str,
        arg0_path: &str,
        supports_components: bool,
    ) -> Result<Option<ImageModule>, ImageLayerError> {
        let Some(image) = self.container_image(id).await? else {
            tracing::debug!(id, "container has no image: the rootfs decides");
            return Ok(None);
        };
        self.image = image;
        let target = self.image_target(id).await?;
        let Some(manifest_descriptor) = self.wasm_manifest(target, supports_components).await?
        else {
            tracing::debug!(id, image = %self.image, "no wasm manifest in the image");
            return Ok(None);
        };
        let bytes = self
            .read_blob(&manifest_descriptor, "manifest", MAX_DOCUMENT_BYTES)
            .await?;
        let manifest: select::Manifest =
            select::parse("manifest", &manifest_descriptor.digest, &bytes)?;
        let Some(layer) = choose_layer(&self.image, &manifest, arg0_path)? else {
            tracing::debug!(id, image = %self.image, "the image has no wasm layer");
            return Ok(None);
        };
        let bytes = self
            .read_blob(layer, "wasm layer", max_module_bytes())
            .await?;
        Ok(Some(ImageModule {
            origin: layer.origin(),
            bytes,
        }))
    }

    async fn container_image(&self, id: &str) -> Result<Option<String>, ImageLayerError> {
        let request = self.request(GetContainerRequest { id: id.to_string() })?;
        let response = ContainersClient::new(self.channel.clone())
            .get(request)
            .await;
        match response {
            Ok(response) => Ok(response
                .into_inner()
                .container
                .map(|c| c.image)
                .filter(|image| !image.is_empty())),
            // A task without a container record (not made by containerd): nothing to look up.
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(rpc("Containers.Get", status)),
        }
    }

    async fn image_target(&self, id: &str) -> Result<Descriptor, ImageLayerError> {
        let request = self.request(GetImageRequest {
            name: self.image.clone(),
        })?;
        let response = ImagesClient::new(self.channel.clone())
            .get(request)
            .await
            .map_err(|status| match status.code() {
                Code::NotFound => ImageLayerError::ImageNotFound {
                    image: self.image.clone(),
                    id: id.to_string(),
                    namespace: self.namespace.clone(),
                },
                _ => rpc("Images.Get", status),
            })?;
        let target = response
            .into_inner()
            .image
            .and_then(|image| image.target)
            .ok_or_else(|| ImageLayerError::ImageNotFound {
                image: self.image.clone(),
                id: id.to_string(),
                namespace: self.namespace.clone(),
            })?;
        Ok(Descriptor {
            media_type: target.media_type,
            digest: target.digest,
            size: u64::try_from(target.size).unwrap_or(0),
            platform: None,
            annotations: target.annotations.into_iter().collect(),
        })
    }

    /// The manifest to run: the target itself, or the wasm entry of an image index.
    async fn wasm_manifest(
        &self,
        target: Descriptor,
        supports_components: bool,
    ) -> Result<Option<Descriptor>, ImageLayerError> {
        let mut pending = VecDeque::from([(target, 0usize)]);
        let mut indexes_read = 0;
        while let Some((descriptor, depth)) = pending.pop_front() {
            if descriptor.is_manifest() {
                return Ok(Some(descriptor));
            }
            if !descriptor.is_index() {
                continue;
            }
            if depth >= MAX_INDEX_DEPTH {
                return Err(ImageLayerError::TooDeep {
                    image: self.image.clone(),
                    max: MAX_INDEX_DEPTH,
                });
            }
            indexes_read += 1;
            if indexes_read > MAX_INDEX_DOCUMENTS {
                return Err(ImageLayerError::TooManyIndexes {
                    image: self.image.clone(),
                    max: MAX_INDEX_DOCUMENTS,
                });
            }
            let bytes = self
                .read_blob(&descriptor, "image index", MAX_DOCUMENT_BYTES)
                .await?;
            let index: select::Index = select::parse("image index", &descriptor.digest, &bytes)?;
            if index.manifests.len() > MAX_INDEX_ENTRIES {
                return Err(ImageLayerError::IndexTooWide {
                    image: self.image.clone(),
                    digest: descriptor.digest,
                    entries: index.manifests.len(),
                    max: MAX_INDEX_ENTRIES,
                });
            }
            match choose_in_index(&index, supports_components) {
                IndexChoice::Manifest(manifest) => return Ok(Some(manifest)),
                IndexChoice::Nested(nested) => {
                    pending.extend(nested.into_iter().map(|d| (d, depth + 1)))
                }
                IndexChoice::NotWasm => {}
            }
        }
        Ok(None)
    }

    /// Reads a blob whole and checks it is exactly what its descriptor says.
    async fn read_blob(
        &self,
        descriptor: &Descriptor,
        what: &'static str,
        max: u64,
    ) -> Result<Vec<u8>, ImageLayerError> {
        let digest = descriptor.digest.clone();
        let expected_hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ImageLayerError::UnsupportedDigest {
                what,
                digest: digest.clone(),
            })?;
        if descriptor.size > max {
            return Err(ImageLayerError::TooLarge {
                what,
                digest,
                size: descriptor.size,
                max,
            });
        }
        let missing = |status: Status| match status.code() {
            Code::NotFound => ImageLayerError::BlobMissing {
                what,
                digest: descriptor.digest.clone(),
                image: self.image.clone(),
            },
            _ => rpc("Content.Read", status),
        };
        let request = self.request(ReadContentRequest {
            digest: digest.clone(),
            offset: 0,
            size: 0,
        })?;
        let mut stream = ContentClient::new(self.channel.clone())
            .read(request)
            .await
            .map_err(missing)?
            .into_inner();
        let mut bytes = Vec::with_capacity(usize::try_from(descriptor.size).unwrap_or(0));
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.message().await.map_err(missing)? {
            let received = (bytes.len() + chunk.data.len()) as u64;
            if received > descriptor.size {
                return Err(ImageLayerError::SizeMismatch {
                    what,
                    digest,
                    expected: descriptor.size,
                    actual: received,
                });
            }
            hasher.update(&chunk.data);
            bytes.extend_from_slice(&chunk.data);
        }
        if bytes.len() as u64 != descriptor.size {
            return Err(ImageLayerError::SizeMismatch {
                what,
                digest,
                expected: descriptor.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = hex::encode(hasher.finalize());
        if !actual.eq_ignore_ascii_case(expected_hex) {
            return Err(ImageLayerError::DigestMismatch {
                what,
                digest,
                actual,
            });
        }
        Ok(bytes)
    }
}

fn rpc(call: &'static str, status: Status) -> ImageLayerError {
    ImageLayerError::Rpc {
        call,
        code: status.code(),
        message: status.message().to_string(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
