//! A wasm guest's memory cap: the share of its container's memory limit that the guest's
//! linear memories may use. The shim changes it while the guest runs (containerd's `Update`,
//! CRI's UpdateContainerResources) through the page the guest's init shares with it (see
//! [`crate::oom`]); engines that honour changes read [`MemoryLimit::bytes`] at each growth.

use std::sync::atomic::{AtomicU64, Ordering};

/// The container's memory the engine keeps for itself: a quarter of the limit, at most this.
const ENGINE_HEADROOM_MAX: u64 = 16 << 20;

/// A guest's memory cap, as [`crate::GuestContext::memory_limit`] gives it to the engine.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimit {
    initial: u64,
    /// Written by the shim on `Update`: 0 until then.
    live: Option<&'static AtomicU64>,
}

impl MemoryLimit {
    /// A cap of `bytes` that never changes (tests, and an init without a shared page).
    pub fn fixed(bytes: u64) -> Self {
        MemoryLimit {
            initial: bytes,
            live: None,
        }
    }

    /// A cap of `initial` bytes until the shim stores another in `live`.
    pub(crate) fn live(initial: u64, live: &'static AtomicU64) -> Self {
        MemoryLimit {
            initial,
            live: Some(live),
        }
    }

    /// The cap now, in bytes.
    pub fn bytes(&self) -> u64 {
        match self.live.map(|cell| cell.load(Ordering::Acquire)) {
            None | Some(0) => self.initial,
            Some(updated) => updated,
        }
    }
}

/// The guest's share of a container memory limit of `limit` bytes: all of it but the
/// engine's headroom (a quarter of the limit, at most 16 MiB).
pub fn guest_share(limit: u64) -> u64 {
    limit - (limit / 4).min(ENGINE_HEADROOM_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_update_replaces_the_initial_cap() {
        static CELL: AtomicU64 = AtomicU64::new(0);
        let limit = MemoryLimit::live(100, &CELL);
        assert_eq!(limit.bytes(), 100);
        CELL.store(250, Ordering::Release);
        assert_eq!(limit.bytes(), 250);
        assert_eq!(MemoryLimit::fixed(7).bytes(), 7);
    }

    #[test]
    fn the_engine_keeps_a_quarter_up_to_16_mib() {
        assert_eq!(guest_share(64 << 20), 48 << 20);
        assert_eq!(guest_share(32 << 20), 24 << 20);
        assert_eq!(guest_share(1 << 30), (1 << 30) - (16 << 20));
    }
}
