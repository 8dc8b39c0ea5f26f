//! `containerd-shim-wasmedge-v1`: runtime `io.containerd.wasmedge.v1` (cargo feature `wasmedge` of wasmpod-wasmedge).

fn main() {
    wasmpod_shim::run::<wasmpod_wasmedge::WasmEdge>();
}
