//! The guest's WASI context from its container spec, shared by core modules (preview1) and
//! components (0.2): args, env, inherited stdio (containerd's FIFOs), `/` and the cwd preopened.

use std::path::Path;

use wasmpod_runtime::{EngineError, GuestContext};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::other;

pub fn builder(guest: &GuestContext) -> Result<WasiCtxBuilder, EngineError> {
    let mut builder = WasiCtxBuilder::new();
    builder.args(&guest.args).inherit_stdio();
    for kv in &guest.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        builder.env(k, v);
    }
    builder
        .preopened_dir("/", "/", FsPerms::ReadWrite)
        .map_err(other("preopen /"))?;
    if guest.cwd != Path::new("/") {
        builder
            .preopened_dir(&guest.cwd, ".", FsPerms::ReadWrite)
            .map_err(other("preopen the working directory"))?;
    }
    Ok(builder)
}
