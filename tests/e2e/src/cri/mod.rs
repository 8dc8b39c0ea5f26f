//! The kubelet stand-in: a CRI v1 client for the private containerd's CRI plugin, the pod and
//! container configurations kubelet would send, and the CRI log format.

pub mod client;
pub mod logs;
pub mod pod;
pub mod stream;

pub use client::CriClient;
pub use pod::Pod;

/// The handler of our shim in the private containerd's CRI config.
pub const WASM_HANDLER: &str = "wasmtime";
/// The handler of runc in the same config.
pub const RUNC_HANDLER: &str = "runc";
