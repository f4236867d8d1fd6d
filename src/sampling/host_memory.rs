//! Host RAM through `sysinfo`, with the kernel's MemAvailable semantics.

use crate::sync::lock;
use std::sync::{Mutex, OnceLock};
use sysinfo::{MemoryRefreshKind, System};

/// Physical memory of the machine and what the kernel estimates it could hand out without
/// swapping (`MemAvailable`): free pages plus reclaimable cache and slab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemory {
    pub total: u64,
    pub available: u64,
}

impl HostMemory {
    /// What cannot be reclaimed: MemTotal − MemAvailable.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

/// One `System` per process: sysinfo keeps its buffers between refreshes. Created on first
/// use, and again on a later sample if creating it failed.
fn shared_system() -> &'static Mutex<Option<System>> {
    static SYSTEM: OnceLock<Mutex<Option<System>>> = OnceLock::new();
    SYSTEM.get_or_init(|| Mutex::new(None))
}

/// Samples `/proc/meminfo` (through sysinfo) now.
pub fn sample_host_memory() -> Result<HostMemory, String> {
    // A panic elsewhere while holding the lock leaves the System intact; keep using it.
    let mut slot = lock(&shared_system());
    if slot.is_none() {
        *slot = Some(System::new().map_err(|e| format!("cannot read host memory: {e}"))?);
    }
    let system = slot.as_mut().expect("created above");
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    match system.total_memory() {
        0 => Err("cannot read host memory: /proc/meminfo gave no MemTotal".to_owned()),
        total => Ok(HostMemory { total, available: system.available_memory().min(total) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_proc_meminfo() {
        let sample = sample_host_memory().unwrap();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        assert_eq!(sample.total, total_kib * 1024);
        assert!(sample.available > 0 && sample.available <= sample.total);
        assert_eq!(sample.used(), sample.total - sample.available);
    }
}
