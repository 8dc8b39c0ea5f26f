//! `containerd-shim-wasmtime-v1`: runtime `io.containerd.wasmtime.v1`.

fn main() {
    wasmpod_shim::run::<wasmpod_wasmtime::Wasmtime>();
}
