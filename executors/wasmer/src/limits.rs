//! The container's memory limit as a cap on the guest's linear memory.
//!
//! wasmer 7 has no hook like wasmtime's `ResourceLimiter` that can trap the guest from inside
//! `memory.grow`: the grow libcall runs on the host stack, where wasmer cannot raise a trap, and
//! turns any error into `memory.grow` returning -1. So the engine's [`Tunables`] wrap every
//! linear memory in [`LimitedMemory`], which refuses to grow past the limit (and refuses to be
//! created larger than it) and records the size asked for. The guest sees `memory.grow` fail,
//! and most toolchains abort at once (Rust: "memory allocation of N bytes failed", then a trap).
//! Once the guest has ended, however it ended, a recorded refusal makes the run an
//! [`wasmpod_runtime::EngineError::MemoryLimit`] (exit 137), as with the wasmtime adapter.
//! The difference: a guest that handles a failed `memory.grow` keeps running until it ends.
//!
//! Memory styles (static reservation, guard pages) come from the compiled artifact and are
//! passed through untouched, so the compiled code's bounds-check assumptions still hold.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wasmer::sys::vm::{
    ExpectedValue, LinearMemory, ThreadConditions, Trap, VMMemory, VMMemoryDefinition,
    VMSharedMemory, VMTable, VMTableDefinition, WaiterError,
};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryError, MemoryStyle, MemoryType, Pages, TableStyle, TableType};
use wasmpod_runtime::MemoryLimit;

const PAGE: u64 = wasmer::WASM_PAGE_SIZE as u64;
/// `exceeded` before any refusal.
const NONE: u64 = 0;

/// What one run's memories share: the cap, and the largest size refused.
#[derive(Debug, Clone)]
pub struct MemoryCap {
    max: MemoryLimit,
    exceeded: Arc<AtomicU64>,
}

impl MemoryCap {
    pub fn new(max: MemoryLimit) -> Self {
        Self {
            max,
            exceeded: Arc::new(AtomicU64::new(NONE)),
        }
    }

    /// The size in bytes a memory asked for when it hit the cap, if any did.
    pub fn exceeded(&self) -> Option<u64> {
        match self.exceeded.load(Ordering::SeqCst) {
            NONE => None,
            requested => Some(requested),
        }
    }

    /// Whether a memory may have `pages`; records the request when it may not.
    fn allows(&self, pages: u64) -> bool {
        let bytes = pages.saturating_mul(PAGE);
        // Read at each growth: the shim's Update may have changed it.
        if bytes <= self.max.bytes() {
            return true;
        }
        self.exceeded.fetch_max(bytes, Ordering::SeqCst);
        false
    }

    fn refuse(&self, current: Pages, delta: Pages) -> MemoryError {
        MemoryError::Generic(format!(
            "memory limit: growing {} pages by {} would exceed {} bytes",
            current.0,
            delta.0,
            self.max.bytes()
        ))
    }
}

/// wasmer's default tunables, with every linear memory capped.
pub struct CappedTunables {
    base: BaseTunables,
    cap: MemoryCap,
}

impl CappedTunables {
    pub fn new(cap: MemoryCap) -> Self {
        Self {
            base: BaseTunables::new(),
            cap,
        }
    }

    fn capped(&self, ty: &MemoryType, memory: VMMemory) -> Result<VMMemory, MemoryError> {
        if !self.cap.allows(u64::from(ty.minimum.0)) {
            return Err(self.cap.refuse(Pages(0), ty.minimum));
        }
        Ok(VMMemory(Box::new(LimitedMemory {
            inner: memory.0,
            cap: self.cap.clone(),
        })))
    }
}

impl Tunables for CappedTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        self.capped(ty, self.base.create_host_memory(ty, style)?)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        // SAFETY: forwarded unchanged; the caller upholds `create_vm_memory`'s contract.
        let memory = unsafe {
            self.base
                .create_vm_memory(ty, style, vm_definition_location)?
        };
        self.capped(ty, memory)
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged; the caller upholds `create_vm_table`'s contract.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }
}

/// A linear memory that cannot grow past its cap; everything else is the wrapped memory's.
#[derive(Debug)]
struct LimitedMemory {
    inner: Box<dyn LinearMemory + Send + Sync>,
    cap: MemoryCap,
}

impl LimitedMemory {
    fn wrap(
        &self,
        inner: Box<dyn LinearMemory + Send + Sync>,
    ) -> Box<dyn LinearMemory + Send + Sync> {
        Box::new(Self {
            inner,
            cap: self.cap.clone(),
        })
    }
}

impl LinearMemory for LimitedMemory {
    fn ty(&self) -> MemoryType {
        self.inner.ty()
    }

    fn size(&self) -> Pages {
        self.inner.size()
    }

    fn style(&self) -> MemoryStyle {
        self.inner.style()
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let current = self.inner.size();
        if !self
            .cap
            .allows(u64::from(current.0).saturating_add(u64::from(delta.0)))
        {
            return Err(self.cap.refuse(current, delta));
        }
        self.inner.grow(delta)
    }

    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        if !self.cap.allows(min_size.div_ceil(PAGE)) {
            let current = self.inner.size();
            return Err(self.cap.refuse(current, Pages(0)));
        }
        self.inner.grow_at_least(min_size)
    }

    fn reset(&mut self) -> Result<(), MemoryError> {
        self.inner.reset()
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.inner.vmmemory()
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Ok(self.wrap(self.inner.try_clone()?))
    }

    unsafe fn initialize_with_data(&self, start: usize, data: &[u8]) -> Result<(), Trap> {
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        unsafe { self.inner.initialize_with_data(start, data) }
    }

    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Ok(self.wrap(self.inner.copy()?))
    }

    fn as_shared(&self) -> Result<VMSharedMemory, MemoryError> {
        self.inner.as_shared()
    }

    unsafe fn do_wait(
        &mut self,
        dst: u32,
        expected: ExpectedValue,
        timeout: Option<std::time::Duration>,
    ) -> Result<u32, WaiterError> {
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        unsafe { self.inner.do_wait(dst, expected, timeout) }
    }

    fn do_notify(&mut self, dst: u32, count: u32) -> u32 {
        self.inner.do_notify(dst, count)
    }

    fn thread_conditions(&self) -> Option<&ThreadConditions> {
        self.inner.thread_conditions()
    }
}
