//! The metrics history: a compact, crash-safe time series of what each full health check
//! found (per-GPU memory, temperature, utilisation and power; host or cgroup memory and
//! PSI; the health state, issue count and pauses), in fixed-size records ([`record`]),
//! downsampled into tiers with a bounded disk use ([`policy`]). [`writer`] records into a
//! locked state directory; [`reader`] reads one without its lock, while it is written.
//! The bytes are documented in `durable::format`.

pub mod policy;
pub mod reader;
pub mod record;
pub mod recording;
pub mod sample;
pub mod writer;

pub use policy::HistoryPolicy;
pub use reader::{read_history, HistoryReadout};
pub use record::{HealthState, Record, Source};
pub use recording::Recording;
pub use writer::HistoryWriter;
