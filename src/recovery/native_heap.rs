//! Returning freed native heap of this process to the operating system.

/// Resident set size of this process, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// glibc's `malloc_trim(0)`: gives free pages at the top of the heap and inside arenas back
/// to the kernel. Returns the bytes the resident set shrank by (0 if it did not, or grew
/// meanwhile through other threads).
pub fn release_native_heap() -> u64 {
    let before = resident_bytes();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    match (before, resident_bytes()) {
        (Some(before), Some(after)) => before.saturating_sub(after),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_heap_is_returned() {
        // Many small blocks (below the mmap threshold) live in the heap; once freed they are
        // only returned to the kernel by a trim.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 4000]).collect();
        assert!(resident_bytes().unwrap() > 64 << 20);
        // Keep the last block so the heap top is not simply shrunk on free.
        let keep = blocks.last().unwrap().clone();
        drop(blocks);
        let released = release_native_heap();
        assert!(released > 32 << 20, "released only {released} bytes");
        assert_eq!(keep.len(), 4000);
    }
}
