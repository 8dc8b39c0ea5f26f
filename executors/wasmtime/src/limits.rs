//! The container's memory limit as a cap on the guest's linear memory: a guest that grows past
//! it traps at once with a clear cause, instead of being OOM-killed at a random point.

use wasmpod_runtime::MemoryLimit;
use wasmtime::ResourceLimiter;

pub struct GuestLimits {
    max_memory: Option<MemoryLimit>,
    /// The size the guest asked for when it hit the cap.
    pub exceeded: Option<usize>,
}

impl GuestLimits {
    pub fn new(max_memory: Option<MemoryLimit>) -> Self {
        Self {
            max_memory,
            exceeded: None,
        }
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Read at each growth: the shim's Update may have changed it.
        let cap = self
            .max_memory
            .map(|max| usize::try_from(max.bytes()).unwrap_or(usize::MAX));
        if cap.is_some_and(|max| desired > max) {
            self.exceeded = Some(desired);
            // An error (not `Ok(false)`) traps the guest instead of letting `memory.grow`
            // return -1, which most toolchains turn into an abort with a vaguer message.
            wasmtime::bail!("memory limit reached");
        }
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }
}
