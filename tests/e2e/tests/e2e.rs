//! The end-to-end suite: `cargo test -p wasmpod-e2e --test e2e [-- FILTER...]`.
//!
//! Each `cases/*.rs` module holds related cases and exposes `fn cases() -> Vec<Case>`;
//! add the module here and extend the list in `main`.

use wasmpod_e2e::runner;

#[path = "../cases/runc.rs"]
mod runc;

fn main() {
    let mut all = Vec::new();
    all.extend(runc::cases());
    runner::main(all);
}
