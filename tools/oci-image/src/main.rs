//! `wasmpod-image`: writes an OCI image-layout tarball from the command line.

mod cli;

use std::path::Path;

use anyhow::{Context, Result};
use wasmpod_oci_image::{busybox_image, ImageBuilder, WasmImageBuilder};

use crate::cli::{Args, Parsed};

fn main() -> Result<()> {
    let args = match cli::parse(std::env::args().skip(1))? {
        Parsed::Help => {
            print!("{}", cli::USAGE);
            return Ok(());
        }
        Parsed::Run(args) => args,
    };
    let written = if args.is_wasm() {
        build_wasm(&args)?.write_tar(&args.out)
    } else {
        build(&args)?.write_tar(&args.out)
    };
    let digest = written.with_context(|| format!("writing {}", args.out.display()))?;
    println!("{} {} {}", args.name, digest, args.out.display());
    Ok(())
}

fn build(args: &Args) -> Result<ImageBuilder> {
    let mut image = match &args.busybox {
        Some(busybox) => busybox_image(&args.name, busybox)
            .with_context(|| format!("building a busybox image from {}", busybox.display()))?,
        None => ImageBuilder::new(&args.name),
    };
    for (image_path, host_path) in &args.files {
        image = image
            .add_host_file(image_path, host_path)
            .with_context(|| format!("adding {image_path}"))?;
    }
    if !args.entrypoint.is_empty() {
        image = image.entrypoint(args.entrypoint.clone());
    }
    if !args.cmd.is_empty() {
        image = image.cmd(args.cmd.clone());
    }
    if !args.env.is_empty() {
        image = image.env(args.env.clone());
    }
    if let Some(dir) = &args.workdir {
        image = image.working_dir(dir);
    }
    Ok(image)
}

fn build_wasm(args: &Args) -> Result<WasmImageBuilder> {
    let mut image = WasmImageBuilder::new(&args.name);
    for host in &args.wasm_modules {
        let (title, bytes) = read_layer(host)?;
        image = image.module(&title, bytes);
    }
    for host in &args.wasm_components {
        let (title, bytes) = read_layer(host)?;
        image = image.component(&title, bytes);
    }
    for (image_path, host_path) in &args.files {
        let bytes =
            std::fs::read(host_path).with_context(|| format!("reading {}", host_path.display()))?;
        image = image.add_file(image_path, bytes, 0o644);
    }
    if args.artifact {
        image = image.artifact();
    }
    if args.no_host_entry {
        image = image.without_host_entry();
    }
    if !args.entrypoint.is_empty() {
        image = image.entrypoint(args.entrypoint.clone());
    }
    if !args.cmd.is_empty() {
        image = image.cmd(args.cmd.clone());
    }
    if !args.env.is_empty() {
        image = image.env(args.env.clone());
    }
    if let Some(dir) = &args.workdir {
        image = image.working_dir(dir);
    }
    Ok(image)
}

/// A wasm layer's title (the file name) and bytes.
fn read_layer(host: &Path) -> Result<(String, Vec<u8>)> {
    let bytes = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
    let title = host
        .file_name()
        .with_context(|| format!("{} has no file name", host.display()))?
        .to_string_lossy()
        .into_owned();
    Ok((title, bytes))
}
