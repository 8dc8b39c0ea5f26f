//! Hostile OCI wasm images, read by the shim from containerd's content store: an index fanning
//! out to thousands of entries or to nested indexes, a wasm layer whose stored bytes no longer
//! match their digest, a manifest larger than any real one. Each is refused by Create within a
//! second, naming the cause. Every case builds its own image (unique name and layer bytes, so
//! corrupting a blob never touches another case's image).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wasmpod_e2e::{cases, Case, Env};
use wasmpod_oci_image::WasmImageBuilder;

use crate::hostile_support::{assert_clean, ensure_refused};

pub fn cases() -> Vec<Case> {
    cases![
        hostile_image_index_fan_out,
        hostile_image_nested_index_fan_out,
        hostile_image_digest_mismatch,
        hostile_image_oversized_manifest,
    ]
}

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image layout tarball unpacked in a directory, to be edited and packed again.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Builds a one-module wasm image named `name` (module bytes unique to it) and unpacks it.
    fn build(env: &Env, tag: &str) -> Result<(Layout, String)> {
        let name = format!(
            "docker.io/wasmpod/hostile-{tag}-{}:latest",
            std::process::id()
        );
        let hello = std::fs::read(env.fixtures_dir().join("wasm/hello.wasm"))
            .context("reading the hello.wasm fixture")?;
        let module = with_custom_section(hello, &name);
        let image = WasmImageBuilder::new(&name)
            .module("hello.wasm", module)
            .entrypoint(vec!["/hello.wasm".to_string()]);
        let base = env.containerd().base().join("hostile-images");
        let dir = base.join(tag);
        std::fs::create_dir_all(&dir)?;
        let tar = base.join(format!("{tag}.built.tar"));
        image.write_tar(&tar).context("writing the image")?;
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&dir)
            .status()?;
        ensure!(status.success(), "tar -xf {}: {status}", tar.display());
        Ok((Layout { dir }, name))
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    fn json(&self, digest: &str) -> Result<Value> {
        let bytes = std::fs::read(self.blob_path(digest))?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Stores `value` as a blob; returns a descriptor of it with `media_type`.
    fn put(&self, value: &Value, media_type: &str) -> Result<Value> {
        let bytes = serde_json::to_vec(value)?;
        let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        std::fs::write(self.blob_path(&digest), &bytes)?;
        Ok(json!({"mediaType": media_type, "digest": digest, "size": bytes.len()}))
    }

    /// An empty image index, its bytes unique to this layout (two cases importing one blob at
    /// once can trip over each other in containerd's content store).
    fn empty_index(&self) -> Result<Value> {
        let case = self.dir.to_string_lossy();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [],
            "annotations": {"wasmpod.test/case": case}
        });
        self.put(&index, MEDIA_INDEX)
    }

    /// The image's top descriptor in `index.json` and the index it names.
    fn top(&self) -> Result<(Value, Value)> {
        let index: Value = serde_json::from_slice(&std::fs::read(self.dir.join("index.json"))?)?;
        let top = index["manifests"][0].clone();
        let digest = top["digest"]
            .as_str()
            .context("index.json without a digest")?;
        Ok((top.clone(), self.json(digest)?))
    }

    /// Replaces the image's top index by `value` (keeping its name annotation).
    fn set_top(&self, value: &Value) -> Result<()> {
        let (old, _) = self.top()?;
        let mut top = self.put(value, MEDIA_INDEX)?;
        top["annotations"] = old["annotations"].clone();
        let index = json!({"schemaVersion": 2, "manifests": [top]});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }

    /// Packs the layout and imports it with `--all-platforms`.
    fn import(&self, env: &Env, name: &str) -> Result<()> {
        let tar = self.dir.with_extension("tar");
        let status = Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&self.dir)
            .args(["oci-layout", "index.json", "blobs"])
            .status()?;
        ensure!(status.success(), "tar -cf {}: {status}", tar.display());
        let tar_arg = tar.to_string_lossy();
        env.ctr()
            .run(&["images", "import", "--all-platforms", &tar_arg])?
            .ok()
            .with_context(|| format!("importing {name}"))?;
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `module` with a custom section holding `text` appended (still a valid module).
fn with_custom_section(mut module: Vec<u8>, text: &str) -> Vec<u8> {
    let mut payload = vec![7];
    payload.extend_from_slice(b"hostile");
    payload.extend_from_slice(text.as_bytes());
    module.push(0);
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        module.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    module.extend_from_slice(&payload);
    module
}

/// `ctr run --rm` of `image` must be refused by Create with all of `needles`.
fn refuse_image(env: &Env, name: &str, image: &str, needles: &[&str]) -> Result<()> {
    let id = env.unique_id(name);
    let out = env.ctr().run_rm(&env.runtime(), image, &id, &[])?;
    ensure_refused(&out, needles)?;
    assert_clean(env, &id)
}

/// The image's top index gets 2,000 more entries (empty nested indexes) beside its host
/// entry: refused from the index's size, before any entry is read.
fn hostile_image_index_fan_out(env: &Env) -> Result<()> {
    env.require_shim()?;
    let (layout, name) = Layout::build(env, "fanout")?;
    let (_, mut top) = layout.top()?;
    let empty = layout.empty_index()?;
    let entries = top["manifests"]
        .as_array_mut()
        .context("top index without manifests")?;
    entries.retain(|d| d["platform"]["architecture"] != "wasm");
    entries.extend(std::iter::repeat_n(empty, 2000));
    layout.set_top(&top)?;
    layout.import(env, &name)?;
    refuse_image(
        env,
        "img-fanout",
        &name,
        &[
            "has 2001 entries, more than the 1024 allowed",
            "index fan-out",
        ],
    )
}

/// 20 nested indexes (the same empty one) and no wasm entry at the top: the shim stops after a
/// bounded number of index reads instead of following every branch.
fn hostile_image_nested_index_fan_out(env: &Env) -> Result<()> {
    env.require_shim()?;
    let (layout, name) = Layout::build(env, "nested")?;
    let (_, mut top) = layout.top()?;
    let empty = layout.empty_index()?;
    let entries = top["manifests"]
        .as_array_mut()
        .context("top index without manifests")?;
    entries.retain(|d| d["platform"]["architecture"] != "wasm");
    entries.extend(std::iter::repeat_n(empty, 20));
    layout.set_top(&top)?;
    layout.import(env, &name)?;
    refuse_image(
        env,
        "img-nested",
        &name,
        &["more than 16 image indexes to read", "index fan-out"],
    )
}

/// The wasm layer's digest of the image's wasm manifest.
fn wasm_layer_digest(layout: &Layout) -> Result<String> {
    let (_, top) = layout.top()?;
    let manifests = top["manifests"].as_array().context("no manifests")?;
    let wasm = manifests
        .iter()
        .find(|d| d["platform"]["architecture"] == "wasm")
        .context("no wasm entry in the top index")?;
    let manifest = layout.json(wasm["digest"].as_str().context("no digest")?)?;
    let layers = manifest["layers"].as_array().context("no layers")?;
    let layer = layers
        .iter()
        .find(|l| l["mediaType"] == "application/wasm")
        .context("no application/wasm layer")?;
    Ok(layer["digest"].as_str().context("no digest")?.to_string())
}

/// After import, the wasm layer's blob in containerd's content store is changed (same size):
/// the shim checks every blob against its digest and refuses it.
fn hostile_image_digest_mismatch(env: &Env) -> Result<()> {
    env.require_shim()?;
    let (layout, name) = Layout::build(env, "digest")?;
    layout.import(env, &name)?;
    let digest = wasm_layer_digest(&layout)?;
    let stored = content_blob(env.containerd().base(), &digest);
    let mut bytes = std::fs::read(&stored)
        .with_context(|| format!("reading {} from the content store", stored.display()))?;
    match bytes.last_mut() {
        Some(last) => *last ^= 0xff,
        None => bail!("empty blob {}", stored.display()),
    }
    std::fs::write(&stored, &bytes).with_context(|| format!("corrupting {}", stored.display()))?;
    refuse_image(
        env,
        "img-digest",
        &name,
        &[
            &format!("wasm layer {digest}: content has digest sha256:"),
            "refusing it",
        ],
    )
}

fn content_blob(base: &Path, digest: &str) -> PathBuf {
    base.join("root/io.containerd.content.v1.content/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The wasm manifest padded to 5 MiB with an annotation: refused from its descriptor's size,
/// before it is read (containerd's own limit for manifests is 4 MiB).
fn hostile_image_oversized_manifest(env: &Env) -> Result<()> {
    env.require_shim()?;
    let (layout, name) = Layout::build(env, "bigmanifest")?;
    let (_, mut top) = layout.top()?;
    let entries = top["manifests"]
        .as_array_mut()
        .context("top index without manifests")?;
    let wasm = entries
        .iter_mut()
        .find(|d| d["platform"]["architecture"] == "wasm")
        .context("no wasm entry")?;
    let mut manifest = layout.json(wasm["digest"].as_str().context("no digest")?)?;
    manifest["annotations"] = json!({"padding": "x".repeat(5 << 20)});
    let media_type = wasm["mediaType"].as_str().unwrap_or_default().to_string();
    let descriptor = layout.put(&manifest, &media_type)?;
    wasm["digest"] = descriptor["digest"].clone();
    wasm["size"] = descriptor["size"].clone();
    let size = descriptor["size"].as_u64().unwrap_or_default();
    let digest = descriptor["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    layout.set_top(&top)?;
    layout.import(env, &name)?;
    refuse_image(
        env,
        "img-bigmanifest",
        &name,
        &[&format!(
            "manifest {digest} is {size} bytes, more than the 4194304 bytes allowed"
        )],
    )
}
