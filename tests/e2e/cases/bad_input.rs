//! (being written)

use wasmpod_e2e::{cases, Case};

pub fn cases() -> Vec<Case> {
    cases![]
}
