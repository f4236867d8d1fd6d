//! This process's own C heap, as the allocator counts it: bytes in live allocations and bytes
//! it keeps free. Every native allocation of the process goes through it (this package's, Node's,
//! V8's off-heap buffers, libuv's), so its in-use figure is what a native leak grows, exactly.
//! Resident memory cannot tell that apart: the allocator keeps freed memory in its arenas and
//! returns it to the kernel when it chooses, so RSS rises and falls by megabytes with no leak.

/// The allocator's own count, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessHeap {
    /// In live allocations: chunks in the arenas plus chunks mapped on their own.
    pub in_use_bytes: u64,
    /// Kept free in the arenas, not returned to the kernel.
    pub free_bytes: u64,
}

/// The heap now, where the allocator can tell (glibc); `None` elsewhere (musl has no
/// `mallinfo2`). It walks every arena under that arena's lock: microseconds, not for a hot path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn read() -> Option<ProcessHeap> {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value; glibc >= 2.33
    // has it (the crate links against glibc's symbol table at load).
    let info = unsafe { libc::mallinfo2() };
    Some(ProcessHeap { in_use_bytes: (info.uordblks + info.hblkhd) as u64, free_bytes: info.fordblks as u64 })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn read() -> Option<ProcessHeap> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_live_allocation_counts_as_in_use_until_freed() {
        const SIZE: usize = 64 << 20;
        let before = read().unwrap();
        let block = vec![1u8; SIZE];
        let during = read().unwrap();
        assert!(during.in_use_bytes >= before.in_use_bytes + (SIZE as u64) * 3 / 4, "{before:?} then {during:?}");
        drop(std::hint::black_box(block));
        let after = read().unwrap();
        assert!(after.in_use_bytes + (SIZE as u64) * 3 / 4 <= during.in_use_bytes, "{during:?} then {after:?}");
    }
}
