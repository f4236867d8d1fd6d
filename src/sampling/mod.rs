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

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as JavaScript's `Date.now()` counts them.
pub fn unix_time_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0).floor()
}
