//! The OCI JSON documents: image config, manifest and index.

use std::collections::BTreeMap;

use serde::Serialize;

pub(crate) const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A core wasm module layer (also the CNCF TAG-Runtime wasm artifact's layer type).
pub const MEDIA_WASM: &str = "application/wasm";
/// A WASI 0.2 component layer, as runwasi's images carry them.
pub const MEDIA_WASM_COMPONENT: &str =
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
/// The config of a CNCF TAG-Runtime wasm OCI artifact.
pub const MEDIA_WASM_ARTIFACT_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The platform architecture of wasm images.
pub const WASM_ARCHITECTURE: &str = "wasm";
/// The platform OS of core modules (WASI preview 1) and of components (WASI 0.2).
pub const OS_WASIP1: &str = "wasip1";
pub const OS_WASIP2: &str = "wasip2";
/// Standard OCI annotation naming a layer's file.
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";

/// Annotation ctr reads to name the imported image.
pub(crate) const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Standard OCI annotation holding the tag.
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Serialize)]
pub(crate) struct ImageConfig {
    pub architecture: String,
    pub os: String,
    pub config: ContainerConfig,
    pub rootfs: RootFs,
}

/// The runtime defaults of the image (`config` in the image config).
#[derive(Serialize, Default, Clone, Debug)]
pub(crate) struct ContainerConfig {
    #[serde(rename = "Entrypoint", skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "WorkingDir", skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Serialize, Clone)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The config of a CNCF TAG-Runtime wasm OCI artifact (`application/vnd.wasm.config.v0+json`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WasmArtifactConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    /// Every manifest layer's digest, in manifest order.
    pub layer_digests: Vec<String>,
    /// Required when `os` is `wasip2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentWorld>,
}

/// The imports and exports of a component's world, as the artifact config lists them.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct ComponentWorld {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

#[derive(Serialize, Clone)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
}

#[derive(Serialize)]
pub(crate) struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Serialize)]
pub(crate) struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// The OCI architecture name of the machine this runs on.
pub(crate) fn host_architecture() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
    .to_string()
}

/// The tag of a reference: `docker.io/a/b:v1` gives `v1`; without a tag, `latest`.
pub(crate) fn tag_of(name: &str) -> String {
    let without_digest = name.split('@').next().unwrap_or(name);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last_segment.rsplit_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag.to_string(),
        _ => "latest".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_taken_from_the_last_segment() {
        assert_eq!(tag_of("docker.io/wasmpod/hello:latest"), "latest");
        assert_eq!(tag_of("localhost:5000/x/y:v2"), "v2");
        assert_eq!(tag_of("localhost:5000/x/y"), "latest");
    }

    #[test]
    fn host_architecture_uses_oci_names() {
        let arch = host_architecture();
        assert_ne!(arch, "x86_64");
        assert_ne!(arch, "aarch64");
    }
}
