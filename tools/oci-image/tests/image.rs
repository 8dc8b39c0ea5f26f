//! Round-trip tests of the image layout written by `ImageBuilder`.

mod common;

use anyhow::Result;
use serde_json::json;
use tar::EntryType;
use wasmpod_oci_image::{ImageBuilder, ImageError};

use common::{blob, find, sha256, str_at, Layout};

fn sample() -> ImageBuilder {
    ImageBuilder::new("docker.io/wasmpod/hello:v1")
        .add_file("/app/bin/hello.wasm", b"\0asm\x01\0\0\0".to_vec(), 0o755)
        .add_file("etc/motd", b"hi\n".to_vec(), 0o644)
        .add_symlink("/app/current", "bin/hello.wasm")
        .add_dir("/tmp", 0o1777)
        .entrypoint(vec!["/app/bin/hello.wasm".to_string()])
        .cmd(vec!["a".to_string(), "b".to_string()])
        .env(vec!["A=1".to_string(), "B=two".to_string()])
        .working_dir("/app")
}

#[test]
fn layer_contains_expected_entries_with_parents_first() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("img.tar");
    sample().write_tar(&out)?;
    let entries = Layout::read(&out)?.layer_entries()?;

    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "app",
            "app/bin",
            "app/bin/hello.wasm",
            "app/current",
            "etc",
            "etc/motd",
            "tmp"
        ]
    );
    for dir_path in ["app", "app/bin", "etc"] {
        let entry = find(&entries, dir_path)?;
        assert_eq!((entry.kind, entry.mode), (EntryType::Directory, 0o755));
    }
    let tmp = find(&entries, "tmp")?;
    assert_eq!((tmp.kind, tmp.mode), (EntryType::Directory, 0o1777));
    let wasm = find(&entries, "app/bin/hello.wasm")?;
    assert_eq!((wasm.kind, wasm.mode), (EntryType::Regular, 0o755));
    assert_eq!(wasm.data, b"\0asm\x01\0\0\0");
    let link = find(&entries, "app/current")?;
    assert_eq!(link.kind, EntryType::Symlink);
    assert_eq!(link.link.as_deref(), Some("bin/hello.wasm"));
    Ok(())
}

#[test]
fn digests_match_blob_contents() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("img.tar");
    let digest = sample().write_tar(&out)?;
    let layout = Layout::read(&out)?;

    assert_eq!(
        layout.files.get("oci-layout").map(Vec::as_slice),
        Some(br#"{"imageLayoutVersion":"1.0.0"}"#.as_slice())
    );
    assert_eq!(str_at(&layout.index, "/manifests/0/digest")?, digest);
    for (name, bytes) in &layout.files {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256(bytes), format!("sha256:{hex}"), "blob {name}");
        }
    }
    let manifest_bytes = blob(&layout.files, &digest)?;
    assert_eq!(
        layout.index["manifests"][0]["size"],
        json!(manifest_bytes.len())
    );
    let config_bytes = blob(&layout.files, str_at(&layout.manifest, "/config/digest")?)?;
    assert_eq!(layout.manifest["config"]["size"], json!(config_bytes.len()));
    assert_eq!(
        layout.manifest["layers"][0]["size"],
        json!(layout.layer_gzip.len())
    );
    assert_eq!(
        str_at(&layout.manifest, "/layers/0/mediaType")?,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    Ok(())
}

#[test]
fn diff_id_is_the_uncompressed_layer_digest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("img.tar");
    sample().write_tar(&out)?;
    let layout = Layout::read(&out)?;
    assert_eq!(layout.config["rootfs"]["type"], json!("layers"));
    assert_eq!(
        layout.config["rootfs"]["diff_ids"],
        json!([sha256(&layout.layer_tar)])
    );
    assert_ne!(sha256(&layout.layer_tar), sha256(&layout.layer_gzip));
    Ok(())
}

#[test]
fn config_and_index_carry_metadata() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("img.tar");
    sample().write_tar(&out)?;
    let layout = Layout::read(&out)?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(layout.config["architecture"], json!(arch));
    assert_eq!(layout.config["os"], json!("linux"));
    assert_eq!(
        layout.config["config"],
        json!({
            "Entrypoint": ["/app/bin/hello.wasm"],
            "Cmd": ["a", "b"],
            "Env": ["A=1", "B=two"],
            "WorkingDir": "/app",
        })
    );
    let descriptor = &layout.index["manifests"][0];
    assert_eq!(
        descriptor["platform"],
        json!({"architecture": arch, "os": "linux"})
    );
    assert_eq!(
        descriptor["annotations"],
        json!({
            "io.containerd.image.name": "docker.io/wasmpod/hello:v1",
            "org.opencontainers.image.ref.name": "v1",
        })
    );
    assert_eq!(layout.index["manifests"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[test]
fn output_is_deterministic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    let first = sample().write_tar(&a)?;
    let second = sample().write_tar(&b)?;
    assert_eq!(first, second);
    assert_eq!(std::fs::read(&a)?, std::fs::read(&b)?);
    Ok(())
}

#[test]
fn host_file_keeps_its_mode_and_later_entries_win() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let host = dir.path().join("tool");
    std::fs::write(&host, b"#!/bin/sh\n")?;
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o750))?;
    let out = dir.path().join("img.tar");
    ImageBuilder::new("x:latest")
        .add_file("/usr/bin/tool", b"old".to_vec(), 0o644)
        .add_host_file("/usr/bin/tool", &host)?
        .write_tar(&out)?;
    let entries = Layout::read(&out)?.layer_entries()?;
    let tool = find(&entries, "usr/bin/tool")?;
    assert_eq!(
        (tool.mode, tool.data.as_slice()),
        (0o750, b"#!/bin/sh\n".as_slice())
    );
    Ok(())
}

#[test]
fn rejects_bad_paths_and_file_parents() {
    let dir = tempfile::tempdir().ok();
    let out = dir
        .as_ref()
        .map(|d| d.path().join("img.tar"))
        .unwrap_or_default();
    let escape = ImageBuilder::new("x").add_file("/a/../../etc/passwd", vec![], 0o644);
    assert!(matches!(
        escape.write_tar(&out),
        Err(ImageError::InvalidPath(_))
    ));
    let under_file = ImageBuilder::new("x")
        .add_file("/a", vec![], 0o644)
        .add_file("/a/b", vec![], 0o644);
    assert!(matches!(
        under_file.write_tar(&out),
        Err(ImageError::NotADirectory { .. })
    ));
    let missing =
        ImageBuilder::new("x").add_host_file("/x", std::path::Path::new("/nonexistent/x"));
    assert!(matches!(missing, Err(ImageError::HostFile { .. })));
}
