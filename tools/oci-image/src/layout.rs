//! Assembles the OCI image layout (oci-layout, index.json, blobs) and writes it as one tar.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::layer::{header, Layer};
use crate::spec::{self, ContainerConfig, Descriptor, ImageConfig, Index, Manifest, Platform};
use crate::{ImageDigest, ImageError};

/// Content of the `oci-layout` file.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A content-addressed blob.
pub(crate) struct Blob {
    hex: String,
    bytes: Vec<u8>,
}

impl Blob {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Blob {
            hex: sha256_hex(&bytes),
            bytes,
        }
    }

    pub(crate) fn digest(&self) -> String {
        format!("sha256:{}", self.hex)
    }

    pub(crate) fn descriptor(&self, media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: self.digest(),
            size: self.bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn to_json<T: serde::Serialize>(
    value: &T,
    what: &'static str,
) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|source| ImageError::Json { what, source })
}

/// Writes the image layout tar to `out` and returns the manifest digest.
pub(crate) fn write(
    out: &Path,
    name: &str,
    config: &ContainerConfig,
    layer: Layer,
) -> Result<ImageDigest, ImageError> {
    let platform = Platform {
        architecture: spec::host_architecture(),
        os: "linux".to_string(),
    };
    let image_config = ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        config: config.clone(),
        rootfs: spec::RootFs {
            kind: "layers".to_string(),
            diff_ids: vec![format!("sha256:{}", sha256_hex(&layer.tar))],
        },
    };
    let config_blob = Blob::new(to_json(&image_config, "image config")?);
    let layer_blob = Blob::new(layer.gzip);
    let manifest = Manifest {
        schema_version: 2,
        media_type: spec::MEDIA_MANIFEST.to_string(),
        config: config_blob.descriptor(spec::MEDIA_CONFIG),
        layers: vec![layer_blob.descriptor(spec::MEDIA_LAYER)],
    };
    let manifest_blob = Blob::new(to_json(&manifest, "manifest")?);

    let mut manifest_descriptor = named(manifest_blob.descriptor(spec::MEDIA_MANIFEST), name);
    manifest_descriptor.platform = Some(platform);
    let index = index(vec![manifest_descriptor]);
    let blobs = [&config_blob, &layer_blob, &manifest_blob];
    write_archive(out, &index, &blobs)?;
    Ok(manifest_blob.digest())
}

/// The descriptor `index.json` lists for the image: its name and tag as annotations.
pub(crate) fn named(mut descriptor: Descriptor, name: &str) -> Descriptor {
    descriptor.annotations = BTreeMap::from([
        (spec::ANNOTATION_IMAGE_NAME.to_string(), name.to_string()),
        (spec::ANNOTATION_REF_NAME.to_string(), spec::tag_of(name)),
    ]);
    descriptor
}

/// An image index over `manifests`.
pub(crate) fn index(manifests: Vec<Descriptor>) -> Index {
    Index {
        schema_version: 2,
        media_type: spec::MEDIA_INDEX.to_string(),
        manifests,
    }
}

/// Writes the layout tar: `oci-layout`, `index.json` and every blob (duplicates written once).
pub(crate) fn write_archive(out: &Path, index: &Index, blobs: &[&Blob]) -> Result<(), ImageError> {
    let index_json = to_json(index, "index")?;
    let write_err = |source| ImageError::Write {
        path: out.to_path_buf(),
        source,
    };
    let file = File::create(out).map_err(write_err)?;
    let mut builder = tar::Builder::new(BufWriter::new(file));
    append_all(&mut builder, &index_json, blobs).map_err(write_err)?;
    let mut writer = builder.into_inner().map_err(write_err)?;
    writer.flush().map_err(write_err)
}

fn append_all<W: Write>(
    builder: &mut tar::Builder<W>,
    index_json: &[u8],
    blobs: &[&Blob],
) -> std::io::Result<()> {
    append_file(builder, "oci-layout", OCI_LAYOUT)?;
    append_file(builder, "index.json", index_json)?;
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut dir_header = header(EntryType::Directory, 0o755, 0);
        builder.append_data(&mut dir_header, dir, std::io::empty())?;
    }
    let mut sorted: Vec<&&Blob> = blobs.iter().collect();
    sorted.sort_by(|a, b| a.hex.cmp(&b.hex));
    sorted.dedup_by(|a, b| a.hex == b.hex);
    for blob in sorted {
        append_file(builder, &format!("blobs/sha256/{}", blob.hex), &blob.bytes)?;
    }
    builder.finish()
}

fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut file_header = header(EntryType::Regular, 0o644, bytes.len() as u64);
    builder.append_data(&mut file_header, path, bytes)
}
