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
pub mod psi;
pub mod xid_watch;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as JavaScript's `Date.now()` counts them.
pub fn unix_time_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0).floor()
}
