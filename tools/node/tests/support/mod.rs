//! A fake node in a temporary directory: a containerd config, a shim directory, a bin
//! directory and a state directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use wasmpod_node::{Handler, InstallOptions, UninstallOptions};

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub struct Node {
    pub dir: tempfile::TempDir,
}

impl Node {
    /// A node whose shim directory holds stand-ins for the wasmtime and wasmer shims.
    pub fn new() -> Node {
        let node = Node {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        std::fs::create_dir_all(node.shim_dir()).unwrap();
        for engine in ["wasmtime", "wasmer"] {
            node.put_shim(
                engine,
                format!("#!/bin/sh\n# {engine} shim v1\n").as_bytes(),
            );
        }
        node
    }

    pub fn put_shim(&self, engine: &str, bytes: &[u8]) {
        std::fs::write(
            self.shim_dir().join(format!("containerd-shim-{engine}-v1")),
            bytes,
        )
        .unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `text` at `rel` (directories created) and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn shim_dir(&self) -> PathBuf {
        self.path("build")
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.path("usr/local/bin")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("var/lib/wasmpod-node")
    }

    pub fn install_options(&self, config: &Path) -> InstallOptions {
        InstallOptions {
            config: Some(config.to_path_buf()),
            shim_dir: self.shim_dir(),
            bin_dir: self.bin_dir(),
            state_dir: self.state_dir(),
            handlers: Handler::defaults(),
            containerd: PathBuf::from("containerd"),
            check: false,
            restart: false,
        }
    }

    pub fn uninstall_options(&self) -> UninstallOptions {
        UninstallOptions {
            state_dir: self.state_dir(),
            force: false,
            restart: false,
        }
    }

    /// Every file under the node's directory with its bytes, to prove nothing changed.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut dirs = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    out.push((path, bytes));
                }
            }
        }
        out.sort();
        out
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
