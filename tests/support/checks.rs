//! Running hostile cases: a panic turned into a failure that says how to reproduce it, and
//! bounds on the memory and time one case may take.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Runs one case, turning a panic into a failure that says how to reproduce it.
pub fn case<T>(target: &str, index: usize, input: &[u8], run: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(value) => value,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let shown: String = String::from_utf8_lossy(&input[..input.len().min(600)]).into_owned();
            panic!("{target} case {index} ({} bytes) failed: {message}\ninput: {shown:?}", input.len())
        }
    }
}

/// The deepest nesting of JSON arrays/objects in `bytes` (strings skipped).
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Peak resident memory of this process, in KiB.
pub fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `run` and asserts it neither took long nor raised peak memory by `max_mib`.
pub fn bounded<T>(what: &str, max_mib: u64, run: impl FnOnce() -> T) -> T {
    let (rss, start) = (peak_rss_kib(), Instant::now());
    let value = run();
    let (grew_mib, took) = (peak_rss_kib().saturating_sub(rss) / 1024, start.elapsed());
    assert!(grew_mib < max_mib, "{what}: peak memory grew by {grew_mib} MiB");
    assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
    value
}
