//! The one wasmtime configuration SoulBox uses, behind SoulBox's own [`EngineSettings`].
//!
//! Settings that change compiled code (fuel metering, epochs, copy-on-write images) are part
//! of every compiled-module cache key through [`EngineSettings::fingerprint`].

use crate::error::RuntimeError;
use std::hash::{Hash, Hasher};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// Guest stack SoulBox allows (CPython recurses deeply).
pub const MAX_WASM_STACK_BYTES: usize = 8 << 20;
/// Native stack of each guest fiber; must exceed [`MAX_WASM_STACK_BYTES`].
pub const ASYNC_STACK_BYTES: usize = 10 << 20;
/// Guests alive at once (pool slots for memories, tables, instances and stacks): stateless
/// guests in flight plus every sandbox context. Slots are address space, not memory: each
/// reserves [`POOL_SLOT_ADDRESS_SPACE_BYTES`] of virtual memory and touches none until used,
/// so the default pool reserves about 16 TiB of a process's 128 TiB (x86-64 and AArch64
/// with 48-bit addresses): one process can hold at most seven backends at this size.
pub const DEFAULT_POOL_SLOTS: u32 = 4096;
/// Virtual address space each pool slot reserves for its linear memory: wasmtime's 4 GiB
/// reservation for a 32-bit memory plus its 32 MiB guard region.
pub const POOL_SLOT_ADDRESS_SPACE_BYTES: u64 = (4 << 30) + (32 << 20);
/// Guests alive at once in a worker process, which runs guests one after another (a guest
/// running, the next one ready and the pristine instance checkpoints and rewinds copy
/// from, for each of the two Python snapshots, and slack). Setting up a pool costs time in
/// proportion to its slots (an `mprotect` per guest stack), which such a process should not
/// pay for slots it never uses.
pub const SEQUENTIAL_POOL_SLOTS: u32 = 8;
/// Elements per table slot: CPython's function table holds ~47k.
pub const POOL_TABLE_ELEMENTS: usize = 1 << 16;
/// Per-instance metadata slot: CPython needs ~1.6 MB, more than wasmtime's 1 MiB default.
pub const POOL_MAX_CORE_INSTANCE_BYTES: usize = 4 << 20;

/// Dirty linear-memory bytes a pool slot resets in place (copying the image back) instead of
/// returning to the kernel, so the next guest in that slot takes no page faults on them. With
/// `PAGEMAP_SCAN` (Linux 6.7+) only pages the guest actually dirtied are copied.
pub const POOL_MEMORY_KEEP_RESIDENT_BYTES: usize = 64 << 20;
/// Table bytes reset in place, likewise (CPython's table is ~370 KiB).
pub const POOL_TABLE_KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// What SoulBox lets callers choose about its wasmtime engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineSettings {
    /// Meter fuel, so requests may set a fuel budget and results report fuel used. Costs about
    /// a third more CPU on guest code. Default: off.
    pub fuel: bool,
    /// Guests alive at once. Each slot reserves [`POOL_SLOT_ADDRESS_SPACE_BYTES`] of address
    /// space when the engine is built, so a process that opens several backends (a test
    /// binary, a service embedding one per tenant class) should give each only the slots it
    /// needs. Default: [`DEFAULT_POOL_SLOTS`].
    pub pool_slots: u32,
    /// Where guests' memories, tables and stacks come from. Default:
    /// [`GuestAllocation::Pooled`] (in [`EngineSettings::pool_slots`] slots).
    pub allocation: GuestAllocation,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings { fuel: false, pool_slots: DEFAULT_POOL_SLOTS, allocation: GuestAllocation::Pooled }
    }
}

/// Where guests' memories, tables and stacks come from. Both map a module's initial memory
/// copy-on-write from its image, and both are bounded by each guest's own limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum GuestAllocation {
    /// A pool of slots reserved when the engine is built, reused guest after guest (each
    /// slot's written pages reset in place, up to [`POOL_MEMORY_KEEP_RESIDENT_BYTES`]). For
    /// anything that runs more than one guest.
    #[default]
    Pooled,
    /// Each guest's own, mapped when it is made and unmapped when it is dropped: no pool to
    /// set up (wasmtime reads the CPU count five times doing so), for a process that runs one
    /// guest and exits, such as `soulbox run` (0.15-0.3 ms less per run, measured).
    OnDemand,
}

/// How a [`wasmtime::Engine`] will be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineRole {
    /// Running guests: pooling allocator, optimized code.
    Run,
    /// Building snapshots once: on-demand allocation, quick unoptimized compiles.
    BuildSnapshot,
}

impl EngineSettings {
    /// Builds the engine.
    pub fn engine(&self, role: EngineRole) -> Result<Engine, RuntimeError> {
        Engine::new(&self.config(role)).map_err(|e| match (role, self.allocation) {
            // The pool's reservation is what fails when the process's address space is full.
            (EngineRole::Run, GuestAllocation::Pooled) => RuntimeError::EngineSetup {
                slots: self.pool_slots,
                address_space_gib: self.pool_address_space() >> 30,
                message: RuntimeError::wasm(&e).to_string(),
            },
            _ => RuntimeError::wasm(&e),
        })
    }

    /// Virtual address space the pool of an [`EngineRole::Run`] engine reserves.
    pub fn pool_address_space(&self) -> u64 {
        u64::from(self.pool_slots) * POOL_SLOT_ADDRESS_SPACE_BYTES
    }

    fn config(&self, role: EngineRole) -> Config {
        let mut config = Config::new();
        config
            .wasm_exceptions(true)
            .max_wasm_stack(MAX_WASM_STACK_BYTES)
            .async_stack_size(ASYNC_STACK_BYTES)
            .epoch_interruption(true)
            .consume_fuel(self.fuel)
            .memory_init_cow(true)
            .parallel_compilation(true)
            // No native-to-wasm address maps: they only put wasm offsets into trap backtraces,
            // which SoulBox never shows, and loading them is a fifth of a one-shot run's start.
            .generate_address_map(false);
        match role {
            EngineRole::Run => {
                config.cranelift_opt_level(OptLevel::Speed);
                if self.allocation == GuestAllocation::Pooled {
                    config.allocation_strategy(InstanceAllocationStrategy::Pooling(self.pooling()));
                }
            }
            EngineRole::BuildSnapshot => {
                config.cranelift_opt_level(OptLevel::None);
            }
        }
        config
    }

    fn pooling(&self) -> PoolingAllocationConfig {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(self.pool_slots)
            .total_memories(self.pool_slots)
            .total_tables(self.pool_slots)
            .total_stacks(self.pool_slots)
            .total_component_instances(0)
            .table_elements(POOL_TABLE_ELEMENTS)
            .max_core_instance_size(POOL_MAX_CORE_INSTANCE_BYTES)
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(POOL_MEMORY_KEEP_RESIDENT_BYTES)
            .table_keep_resident(POOL_TABLE_KEEP_RESIDENT_BYTES);
        pool
    }

    /// A stable digest of everything that makes compiled code compatible: the wasmtime version,
    /// the compiled-artifact format of the vendored wasmtime-environ, and the engine's
    /// compilation settings.
    pub fn fingerprint(engine: &Engine) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("wasmtime-{}-{ARTIFACT_FORMAT}-{:016x}", wasmtime_version(), hasher.finish())
    }
}

/// The encoding of a compiled module's metadata by the vendored wasmtime-environ, which stores
/// its per-function tables as fixed-width words (vendor/wasmtime-environ/SOULBOX-PATCH.md).
/// wasmtime's own compatibility check sees only its version, the same with or without the
/// patch, so this is part of the cache's fingerprint: a module compiled by a build with another
/// encoding is compiled again, never misread. The patched crate defines it, so a build that
/// lacks the patch does not compile rather than share a fingerprint with one that has it.
const ARTIFACT_FORMAT: &str = wasmtime_environ::SOULBOX_ARTIFACT_FORMAT;

/// The wasmtime version SoulBox was built with.
pub fn wasmtime_version() -> &'static str {
    "48.0.8"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_larger_than_the_address_space_is_refused_with_what_to_change() {
        // 40,000 slots ask for about 157 TiB, more than a process's 128 TiB.
        let settings = EngineSettings { pool_slots: 40_000, ..EngineSettings::default() };
        let error = settings.engine(EngineRole::Run).expect_err("the pool cannot be reserved");
        assert!(matches!(error, RuntimeError::EngineSetup { slots: 40_000, .. }), "{error:?}");
        assert!(error.to_string().contains("pool_slots"), "{error}");
        // Guests allocated on demand reserve no pool: the same slot count is no obstacle.
        let on_demand = EngineSettings { allocation: GuestAllocation::OnDemand, ..settings };
        on_demand.engine(EngineRole::Run).expect("no pool to reserve");
    }
}
