//! The end-to-end suite: `cargo test -p wasmpod-e2e --test e2e [-- FILTER...]`.
//!
//! Each `cases/*.rs` module holds related cases and exposes `fn cases() -> Vec<Case>`;
//! add the module here and extend the list in `main`.

use wasmpod_e2e::runner;

#[path = "../cases/bad_input.rs"]
mod bad_input;
#[path = "../cases/lifecycle.rs"]
mod lifecycle;
#[path = "../cases/native.rs"]
mod native;
#[path = "../cases/runc.rs"]
mod runc;
#[path = "../cases/wasm.rs"]
mod wasm;

fn main() {
    let mut all = Vec::new();
    all.extend(runc::cases());
    all.extend(wasm::cases());
    all.extend(native::cases());
    all.extend(bad_input::cases());
    all.extend(lifecycle::cases());
    runner::main(all);
}
