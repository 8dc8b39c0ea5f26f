//! `containerd-shim-wasmer-v1`: runtime `io.containerd.wasmer.v1`.

fn main() {
    wasmpod_shim::run::<wasmpod_wasmer::Wasmer>();
}
