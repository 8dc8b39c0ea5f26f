//! A tenant's module as the node compiles it: copied once, in bounded chunks, into a sealed memfd
//! while its sha256 is computed. The compile process reads exactly the bytes that were hashed
//! (the tenant can no longer change them), and the shim never holds the module in its memory.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use sha2::{Digest, Sha256};

const CHUNK: usize = 64 * 1024;
/// A module that could not be copied into its sealed buffer.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages show
pub enum SourceError {
    /// Reading the module failed.
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: more than the limit of {limit} bytes (WASMPOD_MAX_MODULE_BYTES)")]
    /// More than the limit (a file's size can change after it was checked).
    TooLarge { path: String, limit: u64 },
    /// Creating or sealing the memfd failed.
    #[error("buffering {path} for the compiler: {source}")]
    Buffer {
        path: String,
        source: std::io::Error,
    },
}

/// Immutable module bytes and their digest.
#[derive(Debug)]
pub struct SealedModule {
    memfd: OwnedFd,
    sha256: [u8; 32],
    len: u64,
}

impl SealedModule {
    /// Copies at most `limit` bytes from `reader` (the program file opened by
    /// [`crate::resolve`], or an image layer's bytes).
    pub fn copy_from(path: &str, mut reader: impl Read, limit: u64) -> Result<Self, SourceError> {
        let buffer = |source| SourceError::Buffer {
            path: path.to_string(),
            source,
        };
        let memfd = memfd_create(
            c"wasmpod-module",
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .map_err(|e| buffer(e.into()))?;
        let mut file = File::from(memfd);
        let mut hasher = Sha256::new();
        let mut chunk = vec![0u8; CHUNK];
        let mut len = 0u64;
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(SourceError::Read {
                        path: path.to_string(),
                        source,
                    })
                }
            };
            len += n as u64;
            if len > limit {
                return Err(SourceError::TooLarge {
                    path: path.to_string(),
                    limit,
                });
            }
            hasher.update(&chunk[..n]);
            file.write_all(&chunk[..n]).map_err(buffer)?;
        }
        let seals = SealFlag::F_SEAL_SEAL
            | SealFlag::F_SEAL_WRITE
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_SHRINK;
        fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            FcntlArg::F_ADD_SEALS(seals),
        )
        .map_err(|e| buffer(e.into()))?;
        Ok(Self {
            memfd: file.into(),
            sha256: hasher.finalize().into(),
            len,
        })
    }

    /// The sha256 of the module's bytes.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// [`SealedModule::sha256`] in hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The module's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the module has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A new descriptor for the compile process's stdin, reading from the start.
    pub fn reader(&self) -> std::io::Result<File> {
        // Not a dup: a dup would share (and move) the file offset of the one descriptor.
        let path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.memfd)
        );
        File::open(path)
    }

    /// The sealed memfd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_hashed_sealed_and_bounded() {
        let module = SealedModule::copy_from("/m.wasm", &b"\0asm\x01\0\0\0"[..], 1024).unwrap();
        assert_eq!(module.len(), 8);
        assert_eq!(
            module.sha256_hex(),
            hex::encode(Sha256::digest(b"\0asm\x01\0\0\0"))
        );
        let mut back = Vec::new();
        module.reader().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, b"\0asm\x01\0\0\0");
        let mut writable = std::fs::OpenOptions::new()
            .write(true)
            .open(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&module.fd())
            ))
            .unwrap();
        assert!(
            writable.write_all(b"x").is_err(),
            "a sealed module was written"
        );

        let err = SealedModule::copy_from("/big.wasm", &[0u8; 100][..], 99).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/big.wasm: more than the limit of 99 bytes (WASMPOD_MAX_MODULE_BYTES)"
        );
    }
}
