//! Helpers that read back a written image layout.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One entry of a tar archive.
#[derive(Debug, Clone)]
pub struct TarEntry {
    pub path: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

/// Every entry of a tar archive, in archive order.
pub fn tar_entries(bytes: &[u8]) -> Result<Vec<TarEntry>> {
    let mut archive = tar::Archive::new(bytes);
    let mut entries = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let path = entry.path()?.to_string_lossy().into_owned();
        let link = entry.link_name()?.map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        assert_eq!(header.mtime()?, 0, "mtime of {path}");
        assert_eq!(header.uid()?, 0, "uid of {path}");
        assert_eq!(header.gid()?, 0, "gid of {path}");
        entries.push(TarEntry {
            path: path.trim_end_matches('/').to_string(),
            kind: header.entry_type(),
            mode: header.mode()?,
            link,
            data,
        });
    }
    Ok(entries)
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A parsed image layout tarball.
pub struct Layout {
    pub files: BTreeMap<String, Vec<u8>>,
    pub index: Value,
    pub manifest: Value,
    pub config: Value,
    pub layer_gzip: Vec<u8>,
    pub layer_tar: Vec<u8>,
}

impl Layout {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)?;
        let files: BTreeMap<String, Vec<u8>> = tar_entries(&bytes)?
            .into_iter()
            .filter(|e| e.kind == tar::EntryType::Regular)
            .map(|e| (e.path, e.data))
            .collect();
        let index: Value = serde_json::from_slice(file(&files, "index.json")?)?;
        let manifest_digest = str_at(&index, "/manifests/0/digest")?;
        let manifest: Value = serde_json::from_slice(blob(&files, manifest_digest)?)?;
        let config: Value =
            serde_json::from_slice(blob(&files, str_at(&manifest, "/config/digest")?)?)?;
        let layer_gzip = blob(&files, str_at(&manifest, "/layers/0/digest")?)?.to_vec();
        let mut layer_tar = Vec::new();
        GzDecoder::new(layer_gzip.as_slice()).read_to_end(&mut layer_tar)?;
        Ok(Layout {
            files,
            index,
            manifest,
            config,
            layer_gzip,
            layer_tar,
        })
    }

    pub fn layer_entries(&self) -> Result<Vec<TarEntry>> {
        tar_entries(&self.layer_tar)
    }
}

pub fn file<'a>(files: &'a BTreeMap<String, Vec<u8>>, name: &str) -> Result<&'a [u8]> {
    files
        .get(name)
        .map(Vec::as_slice)
        .with_context(|| format!("{name} missing from layout"))
}

pub fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> Result<&'a [u8]> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        bail!("digest {digest} is not sha256");
    };
    file(files, &format!("blobs/sha256/{hex}"))
}

pub fn str_at<'a>(value: &'a Value, pointer: &str) -> Result<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .with_context(|| format!("no string at {pointer} in {value}"))
}

pub fn find<'a>(entries: &'a [TarEntry], path: &str) -> Result<&'a TarEntry> {
    entries
        .iter()
        .find(|e| e.path == path)
        .with_context(|| format!("{path} missing from layer"))
}
