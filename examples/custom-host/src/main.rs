//! `containerd-shim-customhost-v1`: runtime `io.containerd.customhost.v1`, the wasmtime engine
//! plus the `wasmpod_demo::log` import.

fn main() {
    wasmpod_shim::run::<wasmpod_example_custom_host::CustomHost>();
}
