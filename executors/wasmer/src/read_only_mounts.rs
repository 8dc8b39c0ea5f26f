//! Guests reading files on read-only mounts (a ConfigMap, a read-only hostPath or emptyDir).
//!
//! wasmer-wasix opens a regular file read-write first, whatever the guest asked for, and falls
//! back to the mode asked for only when the host says "permission denied". On a read-only mount
//! the host says EROFS instead, which wasmer turns into an I/O error: the guest could not even
//! read such a file. This file system reports a write the host refused while a read-only open
//! of the same file succeeds as "permission denied", so wasmer's fallback happens.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use wasmer_wasix::virtual_fs::{
    FileOpener, FileSystem, FsError, Metadata, OpenOptions, OpenOptionsConfig, ReadDir, VirtualFile,
};

type Result<T> = std::result::Result<T, FsError>;

/// `F`, with opens that need write access on a read-only mount refused as permission denied.
#[derive(Debug)]
pub struct ReadOnlyMounts<F>(pub F);

impl<F: FileSystem> FileOpener for ReadOnlyMounts<F> {
    fn open(
        &self,
        path: &Path,
        conf: &OpenOptionsConfig,
    ) -> Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        match self.0.new_open_options().options(conf.clone()).open(path) {
            Err(FsError::UnknownError) if conf.read && conf.write => {
                let read_only = OpenOptionsConfig {
                    read: true,
                    write: false,
                    create_new: false,
                    create: false,
                    append: false,
                    truncate: false,
                };
                match self.0.new_open_options().options(read_only).open(path) {
                    Ok(_) => Err(FsError::PermissionDenied),
                    Err(_) => Err(FsError::UnknownError),
                }
            }
            other => other,
        }
    }
}

impl<F: FileSystem> FileSystem for ReadOnlyMounts<F> {
    fn readlink(&self, path: &Path) -> Result<PathBuf> {
        self.0.readlink(path)
    }
    fn read_dir(&self, path: &Path) -> Result<ReadDir> {
        self.0.read_dir(path)
    }
    fn create_dir(&self, path: &Path) -> Result<()> {
        self.0.create_dir(path)
    }
    fn create_symlink(&self, source: &Path, target: &Path) -> Result<()> {
        self.0.create_symlink(source, target)
    }
    fn hard_link(&self, source: &Path, target: &Path) -> Result<()> {
        self.0.hard_link(source, target)
    }
    fn remove_dir(&self, path: &Path) -> Result<()> {
        self.0.remove_dir(path)
    }
    fn rename<'a>(
        &'a self,
        from: &'a Path,
        to: &'a Path,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        self.0.rename(from, to)
    }
    fn metadata(&self, path: &Path) -> Result<Metadata> {
        self.0.metadata(path)
    }
    fn symlink_metadata(&self, path: &Path) -> Result<Metadata> {
        self.0.symlink_metadata(path)
    }
    fn remove_file(&self, path: &Path) -> Result<()> {
        self.0.remove_file(path)
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}
