//! The test images, built locally with `wasmpod_oci_image` and imported with `ctr`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wasmpod_oci_image::{busybox_image, ImageBuilder, WasmImageBuilder};

use crate::ctr::Ctr;

/// A native image: static busybox plus `/data/hello.txt` and [`BUSYBOX_MODULE`].
pub const BUSYBOX_IMAGE: &str = "docker.io/wasmpod/busybox:latest";
/// A wasm-only image: fixtures, entrypoint `/hello.wasm`, env `GREETING=hi`.
pub const WASM_IMAGE: &str = "docker.io/wasmpod/wasm:latest";
/// A wasm module inside [`BUSYBOX_IMAGE`] (the testprog fixture).
pub const BUSYBOX_MODULE: &str = "/modules/testprog.wasm";
/// The contents of `/data/hello.txt` in both images.
pub const HELLO_TXT: &str = "hello from the rootfs\n";
/// The host busybox the native image is made from (must be statically linked).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Files of the wasm image: (path in image, path under `tests/fixtures`, mode).
const WASM_FIXTURES: &[(&str, &str, u32)] = &[
    ("/hello.wasm", "wasm/hello.wasm", 0o755),
    ("/testprog.wasm", "wasm/testprog.wasm", 0o755),
    ("/hello.component.wasm", "wasm/hello.component.wasm", 0o755),
    (
        "/testprog.component.wasm",
        "wasm/testprog.component.wasm",
        0o755,
    ),
    ("/http.component.wasm", "wasm/http.component.wasm", 0o755),
    ("/greet.wat", "wat/greet.wat", 0o644),
    ("/custom-log.wat", "wat/custom-log.wat", 0o644),
    ("/bad/not-wasm.wasm", "bad/not-wasm.wasm", 0o755),
    ("/bad/truncated.wasm", "bad/truncated.wasm", 0o755),
    ("/bad/data.txt", "bad/data.txt", 0o644),
];

/// Builds [`BUSYBOX_IMAGE`] into `dir` and imports it; returns the image name. It also holds
/// [`BUSYBOX_MODULE`] (testprog), for init containers that deliver a module on a volume.
pub fn import_busybox(ctr: &Ctr, dir: &Path, fixtures: &Path) -> Result<String> {
    let busybox = Path::new(HOST_BUSYBOX);
    if !busybox.exists() {
        bail!("{HOST_BUSYBOX} not found: apt-get install busybox-static");
    }
    let image = busybox_image(BUSYBOX_IMAGE, busybox)
        .context("building the busybox image")?
        .add_file("/data/hello.txt", HELLO_TXT.as_bytes().to_vec(), 0o644)
        .add_file(
            BUSYBOX_MODULE,
            fixture(fixtures, "wasm/testprog.wasm")?,
            0o644,
        );
    import(ctr, &image, &dir.join("busybox.tar"))
}

/// Builds the pod sandbox image ([`crate::config::PAUSE_IMAGE`]: busybox `sleep infinity`) into
/// `dir` and imports it.
pub fn import_pause(ctr: &Ctr, dir: &Path) -> Result<String> {
    let busybox = Path::new(HOST_BUSYBOX);
    if !busybox.exists() {
        bail!("{HOST_BUSYBOX} not found: apt-get install busybox-static");
    }
    let image = busybox_image(crate::config::PAUSE_IMAGE, busybox)
        .context("building the pause image")?
        .entrypoint(vec!["/bin/sleep".to_string(), "infinity".to_string()]);
    import(ctr, &image, &dir.join("pause.tar"))
}

/// Builds [`WASM_IMAGE`] from `fixtures` (`tests/fixtures`) into `dir` and imports it.
pub fn import_wasm(ctr: &Ctr, dir: &Path, fixtures: &Path) -> Result<String> {
    let mut image = ImageBuilder::new(WASM_IMAGE)
        .entrypoint(vec!["/hello.wasm".to_string()])
        .env(vec!["GREETING=hi".to_string()])
        .add_file("/data/hello.txt", HELLO_TXT.as_bytes().to_vec(), 0o644);
    for (in_image, host, mode) in wasm_files(fixtures)? {
        let bytes = std::fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
        image = image.add_file(&in_image, bytes, mode);
    }
    import(ctr, &image, &dir.join("wasm.tar"))
}

/// The wasm image files: the named fixtures (all required) and any other file in `bad/`.
fn wasm_files(fixtures: &Path) -> Result<Vec<(String, PathBuf, u32)>> {
    let mut files = Vec::new();
    for (in_image, rel, mode) in WASM_FIXTURES {
        let host = fixtures.join(rel);
        if !host.is_file() {
            bail!(
                "fixture {} is missing: run tests/fixtures/build.sh",
                host.display()
            );
        }
        files.push((in_image.to_string(), host, *mode));
    }
    let mut extra: Vec<PathBuf> = std::fs::read_dir(fixtures.join("bad"))
        .context("listing tests/fixtures/bad")?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && !files.iter().any(|(_, h, _)| h == p))
        .collect();
    extra.sort();
    for host in extra {
        let name = host.file_name().unwrap_or_default().to_string_lossy();
        files.push((format!("/bad/{name}"), host.clone(), 0o644));
    }
    Ok(files)
}

/// Writes `image` to `tar`, imports it and checks that containerd lists it by name.
pub fn import(ctr: &Ctr, image: &ImageBuilder, tar: &Path) -> Result<String> {
    let name = image.name().to_string();
    let digest = image
        .write_tar(tar)
        .with_context(|| format!("writing {name} to {}", tar.display()))?;
    ctr.import(tar)?
        .ok()
        .with_context(|| format!("importing {name} ({digest})"))?;
    expect_listed(ctr, &name)?;
    Ok(name)
}

/// The OCI wasm images (wasm layers, see README "OCI wasm images"), each built by [`oci_image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciWasm {
    /// `hello.wasm` as the only layer, entrypoint `/hello.wasm`, env `GREETING=hi`.
    Module,
    /// `testprog.wasm` and a data layer with `/data/hello.txt` ([`HELLO_TXT`]); entrypoint
    /// `/testprog.wasm`, command `cat /data/hello.txt`.
    ModuleAndData,
    /// `hello.component.wasm` as a component layer, entrypoint `/hello.component.wasm`.
    Component,
    /// `hello.wasm` as a CNCF wasm artifact (with the host entry), entrypoint `/hello.wasm`.
    Artifact,
    /// `hello.wasm` and `testprog.wasm` layers; entrypoint `/testprog.wasm`.
    TwoModules,
    /// An `application/wasm` layer whose bytes are text, entrypoint `/broken.wasm`.
    NotWasm,
    /// `hello.wasm` alone, the wasm manifest named directly (no host entry): containerd 1.6's
    /// CRI runs it, `ctr run` cannot unpack it.
    ModuleNoHostEntry,
}

/// The bytes of `tests/fixtures/<rel>`, or an error saying how to build it.
fn fixture(fixtures: &Path, rel: &str) -> Result<Vec<u8>> {
    let path = fixtures.join(rel);
    std::fs::read(&path).with_context(|| {
        format!(
            "reading fixture {} (run tests/fixtures/build.sh)",
            path.display()
        )
    })
}

/// The builder of `kind` named `name`, from the fixtures in `fixtures` (`tests/fixtures`).
pub fn oci_image(kind: OciWasm, name: &str, fixtures: &Path) -> Result<WasmImageBuilder> {
    let hello = || fixture(fixtures, "wasm/hello.wasm");
    let testprog = || fixture(fixtures, "wasm/testprog.wasm");
    let image = WasmImageBuilder::new(name);
    let entry = |path: &str| vec![path.to_string()];
    Ok(match kind {
        OciWasm::Module => image
            .module("hello.wasm", hello()?)
            .entrypoint(entry("/hello.wasm"))
            .env(vec!["GREETING=hi".to_string()]),
        OciWasm::ModuleAndData => image
            .module("testprog.wasm", testprog()?)
            .add_file("/data/hello.txt", HELLO_TXT.as_bytes().to_vec(), 0o644)
            .entrypoint(entry("/testprog.wasm"))
            .cmd(vec!["cat".to_string(), "/data/hello.txt".to_string()]),
        OciWasm::Component => image
            .component(
                "hello.component.wasm",
                fixture(fixtures, "wasm/hello.component.wasm")?,
            )
            .entrypoint(entry("/hello.component.wasm")),
        OciWasm::Artifact => image
            .module("hello.wasm", hello()?)
            .artifact()
            .entrypoint(entry("/hello.wasm")),
        OciWasm::TwoModules => image
            .module("hello.wasm", hello()?)
            .module("testprog.wasm", testprog()?)
            .entrypoint(entry("/testprog.wasm")),
        OciWasm::NotWasm => image
            .wasm_layer(
                wasmpod_oci_image::MEDIA_WASM,
                "broken.wasm",
                b"this layer is text, not wasm\n".to_vec(),
            )
            .entrypoint(entry("/broken.wasm")),
        OciWasm::ModuleNoHostEntry => image
            .module("hello.wasm", hello()?)
            .without_host_entry()
            .entrypoint(entry("/hello.wasm")),
    })
}

/// Writes `image` to `tar` and imports it with `ctr images import --all-platforms` (wasm
/// content is not the host's platform: without the flag ctr drops it); checks it is listed.
/// An image without the host entry cannot be unpacked by containerd 1.6, so it is imported
/// with `--no-unpack` as well.
pub fn import_oci_wasm(
    ctr: &Ctr,
    image: &WasmImageBuilder,
    tar: &Path,
    unpack: bool,
) -> Result<String> {
    let name = image.name().to_string();
    let digest = image
        .write_tar(tar)
        .with_context(|| format!("writing {name} to {}", tar.display()))?;
    let tar_arg = tar.to_string_lossy();
    let mut args = vec!["images", "import", "--all-platforms"];
    if !unpack {
        args.push("--no-unpack");
    }
    args.push(&tar_arg);
    ctr.run(&args)?
        .ok()
        .with_context(|| format!("importing {name} ({digest})"))?;
    expect_listed(ctr, &name)?;
    Ok(name)
}

/// Fails unless containerd lists image `name` (after an import).
fn expect_listed(ctr: &Ctr, name: &str) -> Result<()> {
    let listed = ctr.run(&["images", "ls", "-q"])?.ok()?;
    if !listed.stdout.lines().any(|l| l.trim() == name) {
        bail!(
            "{name} not listed after import; images: {:?}",
            listed.stdout
        );
    }
    Ok(())
}
