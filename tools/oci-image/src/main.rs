//! `wasmpod-image`: writes an OCI image-layout tarball from the command line.

mod cli;

use anyhow::{Context, Result};
use wasmpod_oci_image::{busybox_image, ImageBuilder};

use crate::cli::{Args, Parsed};

fn main() -> Result<()> {
    let args = match cli::parse(std::env::args().skip(1))? {
        Parsed::Help => {
            print!("{}", cli::USAGE);
            return Ok(());
        }
        Parsed::Run(args) => args,
    };
    let digest = build(&args)?
        .write_tar(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
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
