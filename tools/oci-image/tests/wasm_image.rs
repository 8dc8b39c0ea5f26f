//! Round-trip tests of the wasm image layouts written by `WasmImageBuilder`.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use wasmpod_oci_image::{ImageError, WasmImageBuilder};

use common::{blob, file, find, sha256, str_at, tar_entries};

const MODULE: &[u8] = b"\0asm\x01\0\0\0";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A written layout: its files and a JSON reader over its blobs.
struct Written {
    files: BTreeMap<String, Vec<u8>>,
    digest: String,
}

impl Written {
    fn write(image: &WasmImageBuilder) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("img.tar");
        let digest = image.write_tar(&out)?;
        let files = tar_entries(&std::fs::read(&out)?)?
            .into_iter()
            .filter(|e| e.kind == tar::EntryType::Regular)
            .map(|e| (e.path, e.data))
            .collect();
        Ok(Written { files, digest })
    }

    fn json(&self, digest: &str) -> Result<Value> {
        Ok(serde_json::from_slice(blob(&self.files, digest)?)?)
    }

    fn index_json(&self) -> Result<Value> {
        Ok(serde_json::from_slice(file(&self.files, "index.json")?)?)
    }

    /// The manifest of the nested index whose platform architecture is `arch`.
    fn manifest_for(&self, arch: &str) -> Result<(Value, Value)> {
        let index = self.json(&self.digest)?;
        let entries = index["manifests"].as_array().context("no manifests")?;
        let Some(entry) = entries
            .iter()
            .find(|m| m["platform"]["architecture"] == json!(arch))
        else {
            bail!("no {arch} entry in {index}");
        };
        Ok((entry.clone(), self.json(str_at(entry, "/digest")?)?))
    }
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn fixture(name: &str) -> Result<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/wasm")
        .join(name);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

fn module_with_data() -> WasmImageBuilder {
    WasmImageBuilder::new("docker.io/wasmpod/app:v2")
        .module("app.wasm", MODULE.to_vec())
        .add_file("/data/in.txt", b"data\n".to_vec(), 0o644)
        .entrypoint(vec!["/app.wasm".to_string()])
        .env(vec!["A=1".to_string()])
}

#[test]
fn index_holds_a_wasm_entry_and_a_host_entry() -> Result<()> {
    let written = Written::write(&module_with_data())?;
    let top = written.index_json()?;
    assert_eq!(top["manifests"].as_array().map(Vec::len), Some(1));
    let named = &top["manifests"][0];
    assert_eq!(named["mediaType"], json!(INDEX));
    assert_eq!(str_at(named, "/digest")?, written.digest);
    assert_eq!(
        named["annotations"],
        json!({
            "io.containerd.image.name": "docker.io/wasmpod/app:v2",
            "org.opencontainers.image.ref.name": "v2",
        })
    );

    let (entry, manifest) = written.manifest_for("wasm")?;
    assert_eq!(entry["mediaType"], json!(MANIFEST));
    assert_eq!(
        entry["platform"],
        json!({"architecture": "wasm", "os": "wasip1"})
    );
    let layers = manifest["layers"].as_array().context("no layers")?;
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["mediaType"], json!(GZIP_LAYER));
    assert_eq!(layers[1]["mediaType"], json!("application/wasm"));
    assert_eq!(
        layers[1]["annotations"],
        json!({"org.opencontainers.image.title": "app.wasm"})
    );
    assert_eq!(str_at(&layers[1], "/digest")?, sha256(MODULE));
    assert_eq!(blob(&written.files, &sha256(MODULE))?, MODULE);

    let config = written.json(str_at(&manifest, "/config/digest")?)?;
    assert_eq!(
        manifest["config"]["mediaType"],
        json!("application/vnd.oci.image.config.v1+json")
    );
    assert_eq!(config["architecture"], json!("wasm"));
    assert_eq!(config["os"], json!("wasip1"));
    assert_eq!(
        config["config"],
        json!({"Entrypoint": ["/app.wasm"], "Env": ["A=1"]})
    );

    // Only the tar layer is a filesystem layer.
    let gzip = blob(&written.files, str_at(&layers[0], "/digest")?)?;
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(gzip).read_to_end(&mut tar)?;
    assert_eq!(config["rootfs"]["diff_ids"], json!([sha256(&tar)]));
    let entries = tar_entries(&tar)?;
    assert_eq!(find(&entries, "data/in.txt")?.data, b"data\n");
    Ok(())
}

#[test]
fn host_entry_carries_the_data_layer_and_runtime_defaults() -> Result<()> {
    let written = Written::write(&module_with_data())?;
    let (_, wasm_manifest) = written.manifest_for("wasm")?;
    let (entry, manifest) = written.manifest_for(host_arch())?;
    assert_eq!(
        entry["platform"],
        json!({"architecture": host_arch(), "os": "linux"})
    );
    let layers = manifest["layers"].as_array().context("no layers")?;
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0], wasm_manifest["layers"][0]);
    let config = written.json(str_at(&manifest, "/config/digest")?)?;
    let wasm_config = written.json(str_at(&wasm_manifest, "/config/digest")?)?;
    assert_eq!(config["os"], json!("linux"));
    assert_eq!(config["config"], wasm_config["config"]);
    assert_eq!(config["rootfs"], wasm_config["rootfs"]);
    Ok(())
}

#[test]
fn module_only_image_has_no_tar_layer() -> Result<()> {
    let image = WasmImageBuilder::new("x:latest").module("m.wasm", MODULE.to_vec());
    let written = Written::write(&image)?;
    let (_, manifest) = written.manifest_for("wasm")?;
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1));
    let (_, host) = written.manifest_for(host_arch())?;
    assert_eq!(host["layers"], json!([]));
    let config = written.json(str_at(&host, "/config/digest")?)?;
    assert_eq!(config["rootfs"], json!({"type": "layers", "diff_ids": []}));
    Ok(())
}

#[test]
fn component_layer_makes_a_wasip2_image() -> Result<()> {
    let component = fixture("hello.component.wasm")?;
    let image = WasmImageBuilder::new("c:latest").component("hello.component.wasm", component);
    let written = Written::write(&image)?;
    let (entry, manifest) = written.manifest_for("wasm")?;
    assert_eq!(entry["platform"]["os"], json!("wasip2"));
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        json!("application/vnd.bytecodealliance.wasm.component.layer.v0+wasm")
    );
    let config = written.json(str_at(&manifest, "/config/digest")?)?;
    assert_eq!(config["os"], json!("wasip2"));
    Ok(())
}

#[test]
fn artifact_follows_the_cncf_wasm_config() -> Result<()> {
    let module = WasmImageBuilder::new("a:latest")
        .module("m.wasm", MODULE.to_vec())
        .artifact();
    let written = Written::write(&module)?;
    let (_, manifest) = written.manifest_for("wasm")?;
    assert_eq!(
        manifest["config"]["mediaType"],
        json!("application/vnd.wasm.config.v0+json")
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        json!("application/wasm")
    );
    let config = written.json(str_at(&manifest, "/config/digest")?)?;
    assert_eq!(
        config,
        json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": "wasm",
            "os": "wasip1",
            "layerDigests": [sha256(MODULE)],
        })
    );

    let component = WasmImageBuilder::new("a:latest")
        .component("c.wasm", fixture("hello.component.wasm")?)
        .artifact();
    let written = Written::write(&component)?;
    let (_, manifest) = written.manifest_for("wasm")?;
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        json!("application/wasm")
    );
    let config = written.json(str_at(&manifest, "/config/digest")?)?;
    assert_eq!(config["os"], json!("wasip2"));
    let names = |key: &str| -> Vec<String> {
        config["component"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (exports, imports) = (names("exports"), names("imports"));
    assert!(
        exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")),
        "{exports:?}"
    );
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:cli/")),
        "{imports:?}"
    );
    Ok(())
}

#[test]
fn without_host_entry_the_wasm_manifest_is_the_image() -> Result<()> {
    let image = WasmImageBuilder::new("docker.io/w/solo:latest")
        .module("m.wasm", MODULE.to_vec())
        .without_host_entry();
    let written = Written::write(&image)?;
    let top = written.index_json()?;
    let entry = &top["manifests"][0];
    assert_eq!(entry["mediaType"], json!(MANIFEST));
    assert_eq!(
        entry["platform"],
        json!({"architecture": "wasm", "os": "wasip1"})
    );
    assert_eq!(
        entry["annotations"]["io.containerd.image.name"],
        json!("docker.io/w/solo:latest")
    );
    assert_eq!(str_at(entry, "/digest")?, written.digest);
    Ok(())
}

#[test]
fn every_blob_matches_its_digest_and_output_is_deterministic() -> Result<()> {
    let image = module_with_data().wasm_layer("application/wasm", "bad.wasm", b"nope".to_vec());
    let first = Written::write(&image)?;
    let second = Written::write(&image)?;
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.files, second.files);
    for (name, bytes) in &first.files {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256(bytes), format!("sha256:{hex}"), "blob {name}");
        }
    }
    let (_, manifest) = first.manifest_for("wasm")?;
    assert_eq!(manifest["layers"][2]["digest"], json!(sha256(b"nope")));
    Ok(())
}

#[test]
fn refuses_images_it_cannot_write() {
    let dir = tempfile::tempdir().ok();
    let out = dir
        .as_ref()
        .map(|d| d.path().join("img.tar"))
        .unwrap_or_default();
    let empty = WasmImageBuilder::new("x").add_file("/a", vec![], 0o644);
    assert!(matches!(
        empty.write_tar(&out),
        Err(ImageError::NoWasmLayer)
    ));
    let with_files = WasmImageBuilder::new("x")
        .module("m.wasm", MODULE.to_vec())
        .add_file("/a", vec![], 0o644)
        .artifact();
    assert!(matches!(
        with_files.write_tar(&out),
        Err(ImageError::ArtifactWithFiles)
    ));
    let not_component = WasmImageBuilder::new("x")
        .component("c.wasm", MODULE.to_vec())
        .artifact();
    assert!(matches!(
        not_component.write_tar(&out),
        Err(ImageError::Component { .. })
    ));
}
