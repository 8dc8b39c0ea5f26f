//! The container's memory limit as a cap on the guest's linear memory: a guest that grows past
//! it traps at once with a clear cause, instead of being OOM-killed at a random point.

use wasmtime::ResourceLimiter;

pub struct GuestLimits {
    max_memory: Option<usize>,
    /// The size the guest asked for when it hit the cap.
    pub exceeded: Option<usize>,
}

impl GuestLimits {
    pub fn new(max_memory: Option<u64>) -> Self {
        Self {
            max_memory: max_memory.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
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
        if self.max_memory.is_some_and(|max| desired > max) {
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
