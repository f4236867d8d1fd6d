//! Reading the machine: host memory, this process's cgroup, PSI, and GPUs through NVML.
//!
//! Every reader takes a filesystem root so that tests (and sidecars that mount the host's
//! `/proc` elsewhere) can point it at other files. Nothing here blocks on anything but the
//! files and the NVML library it reads.

pub mod cgroup;
pub mod fast;
pub mod gpu;
pub mod host_memory;
pub mod memory;
pub mod nvml_session;
pub mod pressure_events;
pub mod process_heap;
pub mod psi;
pub mod xid_watch;

/// Files of a fake filesystem root for the readers' tests.
#[cfg(test)]
pub(crate) mod test_files {
    use std::path::Path;

    /// Writes `text` at `root/relative`, creating its directories; through a rename, so that a
    /// reader in another thread or process never sees a half-written file.
    pub fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let temp = path.with_extension("tmp");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &path).unwrap();
    }
}

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as JavaScript's `Date.now()` counts them.
pub fn unix_time_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0).floor()
}

/// A measured duration in milliseconds, to the microsecond: `0.379`, never
/// `0.37922100000000003`. Every `duration_ms` the package reports goes through here.
pub fn duration_ms(elapsed: Duration) -> f64 {
    elapsed.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::duration_ms;
    use std::time::Duration;

    #[test]
    fn durations_are_whole_microseconds_in_milliseconds() {
        // as_secs_f64() * 1000.0 gave 0.37922100000000003 here.
        let elapsed = Duration::from_nanos(379_221_000);
        assert_eq!(duration_ms(Duration::from_nanos(379_221)).to_string(), "0.379");
        assert_eq!(duration_ms(elapsed).to_string(), "379.221");
        assert_eq!(duration_ms(Duration::from_millis(2)).to_string(), "2");
        assert_eq!(duration_ms(Duration::ZERO), 0.0);
    }
}
