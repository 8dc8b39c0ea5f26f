//! The container's memory limit as a cap on the guest's linear memory.
//!
//! libwasmedge (0.17) has no hook like wasmtime's `ResourceLimiter`: its only control is a page
//! limit in the runtime configuration (`max_memory_pages`), applied to every memory the guest
//! instantiates. Past it, `memory.grow` returns -1 (the guest is not trapped, and most toolchains
//! abort at once: Rust prints "memory allocation of N bytes failed" and traps); a memory
//! *declared* larger than the limit is silently shrunk to it. libwasmedge tells of both only
//! through its log, so:
//!
//! - before instantiating, exported memories (every WASI program exports its memory) whose
//!   initial size exceeds the limit are refused with the exact size asked for;
//! - during the run, the log is captured (see `log`), and a refusal found there makes the run
//!   an [`EngineError::MemoryLimit`] (exit 137) once the guest has ended, however it ended, as
//!   with the wasmer adapter. A guest that handles a failed `memory.grow` keeps running until
//!   it ends.
//!
//! libwasmedge does not log how much memory was asked for, so `requested` is the smallest size
//! it refuses: one page more than the limit.

use wasmpod_runtime::EngineError;

pub const PAGE: u64 = 65536;
/// The most pages a 32-bit memory can have (libwasmedge's own bound).
const MAX_PAGES: u64 = 65536;

/// libwasmedge's page limit for a guest allowed `limit` bytes: the whole pages that fit.
pub fn page_limit(limit: u64) -> u32 {
    // At most 65536, so the conversion cannot fail.
    u32::try_from((limit / PAGE).min(MAX_PAGES)).unwrap_or(u32::MAX)
}

/// Refuses a memory whose initial size (`min_pages`) exceeds `limit` bytes.
pub fn check_initial(limit: u64, min_pages: u32) -> Result<(), EngineError> {
    if min_pages > page_limit(limit) {
        return Err(EngineError::MemoryLimit {
            limit,
            requested: u64::from(min_pages) * PAGE,
        });
    }
    Ok(())
}

/// Whether a libwasmedge log message says that the page limit refused a memory: a grow
/// ("Memory Instance: Memory grow page failed, exceeded limited N page size in configuration.")
/// or an initial size ("Memory Instance: Limited N page in configuration.").
pub fn is_limit_refusal(message: &str) -> bool {
    message.starts_with("Memory Instance:") && message.contains("in configuration")
}

/// The run's outcome once the guest has ended: the memory limit if libwasmedge refused a memory
/// under it (`refused`: a captured log message satisfied [`is_limit_refusal`]).
pub fn exceeded(limit: Option<u64>, refused: bool) -> Option<EngineError> {
    let limit = limit.filter(|_| refused)?;
    Some(EngineError::MemoryLimit {
        limit,
        requested: (u64::from(page_limit(limit)) + 1) * PAGE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limit_rounds_down_and_stays_within_32_bit_memories() {
        assert_eq!(page_limit(0), 0);
        assert_eq!(page_limit(PAGE - 1), 0);
        assert_eq!(page_limit(24 << 20), 384);
        assert_eq!(page_limit((24 << 20) + PAGE - 1), 384);
        assert_eq!(page_limit(u64::MAX), 65536);
    }

    #[test]
    fn initial_memory_over_the_limit_is_the_memory_limit() {
        check_initial(1 << 20, 16).unwrap();
        match check_initial(1 << 20, 17) {
            Err(EngineError::MemoryLimit { limit, requested }) => {
                assert_eq!((limit, requested), (1 << 20, 17 * PAGE));
            }
            other => panic!("expected the memory limit, got {other:?}"),
        }
    }

    #[test]
    fn refusals_in_the_log_make_the_run_a_memory_limit() {
        let grow = "Memory Instance: Memory grow page failed, exceeded limited 16 page size \
                    in configuration.";
        let initial = "Memory Instance: Limited 16 page in configuration.";
        let other = [
            "Memory Instance: Limited 70000 page larger than the 32-bit page upper bound 65536.",
            "execution failed: unreachable, Code: 0x89",
        ];
        assert!(is_limit_refusal(grow) && is_limit_refusal(initial));
        assert!(other.iter().all(|m| !is_limit_refusal(m)));

        match exceeded(Some(1 << 20), true) {
            Some(EngineError::MemoryLimit { limit, requested }) => {
                assert_eq!((limit, requested), (1 << 20, 17 * PAGE));
            }
            other => panic!("expected the memory limit, got {other:?}"),
        }
        assert!(exceeded(Some(1 << 20), false).is_none());
        assert!(exceeded(None, true).is_none());
    }
}
