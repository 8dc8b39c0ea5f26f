//! The public builder: collects the image contents and runtime defaults.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::layer::{self, EntryKind};
use crate::spec::ContainerConfig;
use crate::{layout, ImageDigest, ImageError};

/// Builds a single-layer OCI image and writes it as an image-layout tarball.
///
/// Paths inside the image may be given with or without a leading `/`. Missing parent
/// directories are created with mode 0755. When a path is added twice, the later entry wins.
/// Invalid paths (containing `..`) are reported by [`ImageBuilder::write_tar`].
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    name: String,
    config: ContainerConfig,
    entries: Vec<(String, EntryKind)>,
}

impl ImageBuilder {
    /// Starts an empty image; `name` is the full reference, e.g. `docker.io/wasmpod/hello:latest`.
    pub fn new(name: &str) -> Self {
        ImageBuilder {
            name: name.to_string(),
            config: ContainerConfig::default(),
            entries: Vec::new(),
        }
    }

    /// The image name given to [`ImageBuilder::new`].
    pub fn name(&self) -> &str {
        &self.name
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

    /// Adds a regular file with the given permission bits.
    pub fn add_file(mut self, path_in_image: &str, contents: Vec<u8>, mode: u32) -> Self {
        self.entries.push((
            path_in_image.to_string(),
            EntryKind::File { contents, mode },
        ));
        self
    }

    /// Adds a regular file read from the host, keeping its permission bits.
    pub fn add_host_file(self, path_in_image: &str, host_path: &Path) -> Result<Self, ImageError> {
        let host_err = |source| ImageError::HostFile {
            path: host_path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(host_path)
            .map_err(host_err)?
            .permissions()
            .mode();
        let contents = std::fs::read(host_path).map_err(host_err)?;
        Ok(self.add_file(path_in_image, contents, mode & 0o7777))
    }

    /// Adds a symbolic link pointing at `target` (stored verbatim).
    pub fn add_symlink(mut self, path_in_image: &str, target: &str) -> Self {
        let target = target.to_string();
        self.entries
            .push((path_in_image.to_string(), EntryKind::Symlink { target }));
        self
    }

    /// Adds a directory with the given permission bits.
    pub fn add_dir(mut self, path_in_image: &str, mode: u32) -> Self {
        self.entries
            .push((path_in_image.to_string(), EntryKind::Dir { mode }));
        self
    }

    /// Writes the OCI image layout tarball to `out`; returns the manifest digest `sha256:...`.
    pub fn write_tar(&self, out: &Path) -> Result<ImageDigest, ImageError> {
        let layer = layer::build(&self.entries)?;
        layout::write(out, &self.name, &self.config, layer)
    }
}

/// Directory mode used for parents that were not added explicitly.
pub const DEFAULT_DIR_MODE: u32 = layer::DEFAULT_DIR_MODE;
