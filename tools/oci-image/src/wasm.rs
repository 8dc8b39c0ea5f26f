//! Wasm images: wasm layers (modules, components) instead of a rootfs, optionally beside one
//! ordinary tar layer of data files.
//!
//! The tarball's `index.json` names one image. By default that image is an index of two
//! manifests: the wasm manifest (platform `wasm`/`wasip1` or `wasip2`) and a host-platform
//! entry (`linux`/<this machine's architecture>) holding only the data layer and the same
//! runtime defaults. containerd 1.6 cannot unpack wasm layers, so it unpacks and runs the host
//! entry, and the shim reads the wasm layers from the content store; see README "OCI wasm
//! images".

use std::collections::BTreeMap;
use std::path::Path;

use crate::component;
use crate::layer::{self, EntryKind};
use crate::layout::{self, sha256_hex, Blob};
use crate::spec::{self, ContainerConfig, Descriptor, ImageConfig, Manifest, Platform};
use crate::{ImageDigest, ImageError};

/// The shape of the wasm manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmLayout {
    /// An OCI image config with `architecture: wasm`, the runtime defaults, and a rootfs that
    /// lists only the tar layers (wasm layers are not filesystem layers): runwasi's shape.
    Image,
    /// A CNCF TAG-Runtime wasm OCI artifact: config `application/vnd.wasm.config.v0+json`,
    /// every layer `application/wasm`, no rootfs and no data files.
    Artifact,
}

/// What a wasm layer holds, which decides its media type.
#[derive(Debug, Clone)]
enum WasmKind {
    Module,
    Component,
    /// Any media type, bytes taken as they are (also for broken test images).
    Raw(String),
}

#[derive(Debug, Clone)]
struct WasmLayer {
    kind: WasmKind,
    title: String,
    bytes: Vec<u8>,
}

impl WasmLayer {
    fn media_type(&self, layout: WasmLayout) -> &str {
        match (&self.kind, layout) {
            (WasmKind::Raw(media_type), _) => media_type,
            (WasmKind::Component, WasmLayout::Image) => spec::MEDIA_WASM_COMPONENT,
            _ => spec::MEDIA_WASM,
        }
    }

    fn is_component(&self) -> bool {
        match &self.kind {
            WasmKind::Component => true,
            WasmKind::Module => false,
            WasmKind::Raw(media_type) => {
                media_type == spec::MEDIA_WASM_COMPONENT || component::is_component(&self.bytes)
            }
        }
    }
}

/// Builds a wasm image and writes it as an image-layout tarball for `ctr images import
/// --all-platforms`.
#[derive(Debug, Clone)]
pub struct WasmImageBuilder {
    name: String,
    config: ContainerConfig,
    wasm: Vec<WasmLayer>,
    files: Vec<(String, EntryKind)>,
    layout: WasmLayout,
    host_entry: bool,
}

impl WasmImageBuilder {
    /// An empty wasm image of [`WasmLayout::Image`] with a host-platform entry.
    pub fn new(name: &str) -> Self {
        WasmImageBuilder {
            name: name.to_string(),
            config: ContainerConfig::default(),
            wasm: Vec::new(),
            files: Vec::new(),
            layout: WasmLayout::Image,
            host_entry: true,
        }
    }

    /// The image name given to [`WasmImageBuilder::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a core module layer (`application/wasm`); `title` names it (annotation
    /// `org.opencontainers.image.title`), e.g. `hello.wasm`.
    pub fn module(mut self, title: &str, bytes: Vec<u8>) -> Self {
        self.push(WasmKind::Module, title, bytes);
        self
    }

    /// Adds a component layer (`application/vnd.bytecodealliance.wasm.component.layer.v0+wasm`,
    /// or `application/wasm` in an artifact).
    pub fn component(mut self, title: &str, bytes: Vec<u8>) -> Self {
        self.push(WasmKind::Component, title, bytes);
        self
    }

    /// Adds a layer with any media type and bytes, unchecked.
    pub fn wasm_layer(mut self, media_type: &str, title: &str, bytes: Vec<u8>) -> Self {
        self.push(WasmKind::Raw(media_type.to_string()), title, bytes);
        self
    }

    fn push(&mut self, kind: WasmKind, title: &str, bytes: Vec<u8>) {
        let title = title.to_string();
        self.wasm.push(WasmLayer { kind, title, bytes });
    }

    /// Writes the CNCF wasm artifact shape instead of an OCI image config.
    pub fn artifact(mut self) -> Self {
        self.layout = WasmLayout::Artifact;
        self
    }

    /// Leaves out the host-platform entry: `index.json` names the wasm manifest itself.
    /// containerd 1.6 then cannot unpack the image (see README "OCI wasm images").
    pub fn without_host_entry(mut self) -> Self {
        self.host_entry = false;
        self
    }

    /// Adds a data file to the image's tar layer.
    pub fn add_file(mut self, path_in_image: &str, contents: Vec<u8>, mode: u32) -> Self {
        let kind = EntryKind::File { contents, mode };
        self.files.push((path_in_image.to_string(), kind));
        self
    }

    /// Adds a directory to the image's tar layer.
    pub fn add_dir(mut self, path_in_image: &str, mode: u32) -> Self {
        self.files
            .push((path_in_image.to_string(), EntryKind::Dir { mode }));
        self
    }

    /// Sets the entrypoint (replaces any earlier value).
    pub fn entrypoint(mut self, args: Vec<String>) -> Self {
        self.config.entrypoint = args;
        self
    }

    /// Sets the default command (replaces any earlier value).
    pub fn cmd(mut self, args: Vec<String>) -> Self {
        self.config.cmd = args;
        self
    }

    /// Appends environment variables, each `K=V`.
    pub fn env(mut self, vars: Vec<String>) -> Self {
        self.config.env.extend(vars);
        self
    }

    /// Sets the working directory.
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.config.working_dir = Some(dir.to_string());
        self
    }

    /// `wasip2` when any layer is a component, else `wasip1`.
    fn os(&self) -> &'static str {
        if self.wasm.iter().any(WasmLayer::is_component) {
            spec::OS_WASIP2
        } else {
            spec::OS_WASIP1
        }
    }

    /// Writes the image layout tarball to `out`; returns the digest `index.json` names (the
    /// index with the host entry, else the wasm manifest).
    pub fn write_tar(&self, out: &Path) -> Result<ImageDigest, ImageError> {
        if self.wasm.is_empty() {
            return Err(ImageError::NoWasmLayer);
        }
        if self.layout == WasmLayout::Artifact && !self.files.is_empty() {
            return Err(ImageError::ArtifactWithFiles);
        }
        let data = self.data_layer()?;
        let mut blobs = Vec::new();
        let wasm_manifest = self.wasm_manifest(data.as_ref(), &mut blobs)?;
        let top = if self.host_entry {
            let host_manifest = self.host_manifest(data.as_ref(), &mut blobs)?;
            let index = layout::index(vec![wasm_manifest, host_manifest]);
            let index_blob = Blob::new(layout::to_json(&index, "image index")?);
            let descriptor = index_blob.descriptor(spec::MEDIA_INDEX);
            blobs.push(index_blob);
            descriptor
        } else {
            wasm_manifest
        };
        let top = layout::named(top, &self.name);
        let digest = top.digest.clone();
        let refs: Vec<&Blob> = blobs.iter().collect();
        layout::write_archive(out, &layout::index(vec![top]), &refs)?;
        Ok(digest)
    }

    /// The data files as one gzip tar layer (tar bytes give the diff_id), if there are any.
    fn data_layer(&self) -> Result<Option<layer::Layer>, ImageError> {
        if self.files.is_empty() {
            return Ok(None);
        }
        layer::build(&self.files).map(Some)
    }

    /// The wasm manifest with its config and layers (blobs appended to `blobs`); returns its
    /// descriptor with the wasm platform.
    fn wasm_manifest(
        &self,
        data: Option<&layer::Layer>,
        blobs: &mut Vec<Blob>,
    ) -> Result<Descriptor, ImageError> {
        let mut layers = Vec::new();
        if let Some(data) = data {
            let blob = Blob::new(data.gzip.clone());
            layers.push(blob.descriptor(spec::MEDIA_LAYER));
            blobs.push(blob);
        }
        for wasm in &self.wasm {
            let blob = Blob::new(wasm.bytes.clone());
            let mut descriptor = blob.descriptor(wasm.media_type(self.layout));
            descriptor.annotations =
                BTreeMap::from([(spec::ANNOTATION_TITLE.to_string(), wasm.title.clone())]);
            layers.push(descriptor);
            blobs.push(blob);
        }
        let os = self.os();
        let (config_json, config_media_type) = match self.layout {
            WasmLayout::Image => {
                let config = ImageConfig {
                    architecture: spec::WASM_ARCHITECTURE.to_string(),
                    os: os.to_string(),
                    config: self.config.clone(),
                    rootfs: rootfs(data),
                };
                (
                    layout::to_json(&config, "wasm image config")?,
                    spec::MEDIA_CONFIG,
                )
            }
            WasmLayout::Artifact => {
                let config = self.artifact_config(os, &layers)?;
                let json = layout::to_json(&config, "wasm artifact config")?;
                (json, spec::MEDIA_WASM_ARTIFACT_CONFIG)
            }
        };
        let config_blob = Blob::new(config_json);
        let manifest = Manifest {
            schema_version: 2,
            media_type: spec::MEDIA_MANIFEST.to_string(),
            config: config_blob.descriptor(config_media_type),
            layers,
        };
        blobs.push(config_blob);
        let manifest_blob = Blob::new(layout::to_json(&manifest, "wasm manifest")?);
        let mut descriptor = manifest_blob.descriptor(spec::MEDIA_MANIFEST);
        descriptor.platform = Some(Platform {
            architecture: spec::WASM_ARCHITECTURE.to_string(),
            os: os.to_string(),
        });
        blobs.push(manifest_blob);
        Ok(descriptor)
    }

    fn artifact_config(
        &self,
        os: &str,
        layers: &[Descriptor],
    ) -> Result<spec::WasmArtifactConfig, ImageError> {
        let component = match self.wasm.iter().find(|w| w.is_component()) {
            Some(layer) => Some(component::world(&layer.title, &layer.bytes)?),
            None => None,
        };
        Ok(spec::WasmArtifactConfig {
            // Fixed, so the same inputs always give the same digests.
            created: "1970-01-01T00:00:00Z".to_string(),
            architecture: spec::WASM_ARCHITECTURE.to_string(),
            os: os.to_string(),
            layer_digests: layers.iter().map(|l| l.digest.clone()).collect(),
            component,
        })
    }

    /// The host-platform entry: the data layer (if any) and the runtime defaults, which
    /// containerd 1.6 unpacks and uses for the container's spec.
    fn host_manifest(
        &self,
        data: Option<&layer::Layer>,
        blobs: &mut Vec<Blob>,
    ) -> Result<Descriptor, ImageError> {
        let platform = Platform {
            architecture: spec::host_architecture(),
            os: "linux".to_string(),
        };
        let config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            config: self.config.clone(),
            rootfs: rootfs(data),
        };
        let config_blob = Blob::new(layout::to_json(&config, "host entry config")?);
        let mut layers = Vec::new();
        if let Some(data) = data {
            // The same blob as the wasm manifest's data layer; the archive stores it once.
            let blob = Blob::new(data.gzip.clone());
            layers.push(blob.descriptor(spec::MEDIA_LAYER));
            blobs.push(blob);
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: spec::MEDIA_MANIFEST.to_string(),
            config: config_blob.descriptor(spec::MEDIA_CONFIG),
            layers,
        };
        blobs.push(config_blob);
        let manifest_blob = Blob::new(layout::to_json(&manifest, "host entry manifest")?);
        let mut descriptor = manifest_blob.descriptor(spec::MEDIA_MANIFEST);
        descriptor.platform = Some(platform);
        blobs.push(manifest_blob);
        Ok(descriptor)
    }
}

/// The rootfs of a config: only the data layer is a filesystem layer.
fn rootfs(data: Option<&layer::Layer>) -> spec::RootFs {
    spec::RootFs {
        kind: "layers".to_string(),
        diff_ids: data
            .map(|d| format!("sha256:{}", sha256_hex(&d.tar)))
            .into_iter()
            .collect(),
    }
}
