//! Every test fixture runs under the wasm guest seccomp filter, each case in a child process
//! that prepares the engine and module, installs the filter, then runs the guest (see
//! `wasmpod_runtime::seccomp::testkit`). `cargo test -p wasmpod-wasmtime --test guest_seccomp -- NAME`
//! runs the cases whose name contains NAME.

fn main() {
    wasmpod_runtime::seccomp::testkit::main::<wasmpod_wasmtime::Wasmtime>();
}
