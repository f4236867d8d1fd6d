//! How finely the history keeps what, and so how much disk it may take: policy as data.

use super::record::RECORD_BYTES;
use crate::policy::thresholds::HISTORY_STEP_MS;

/// One resolution of the history: buckets of `step_ms`, kept for `retention_steps`, in
/// files of `file_steps` buckets each (`{prefix}{first bucket ms:020}.rec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub prefix: &'static str,
    pub step_ms: u64,
    pub retention_steps: u64,
    pub file_steps: u64,
}

impl Tier {
    pub fn span_ms(&self) -> u64 {
        self.step_ms * self.file_steps
    }

    pub fn retention_ms(&self) -> u64 {
        self.step_ms * self.retention_steps
    }

    /// Files kept at most: those the retention spans, the one being written, and one
    /// that straddles the retention's start.
    pub fn max_files(&self) -> u64 {
        self.retention_steps.div_ceil(self.file_steps) + 2
    }

    /// Bytes one file may hold with `sources` records a bucket (the host and each GPU):
    /// its buckets plus [`RESTART_SLACK_STEPS`] more (a restart within a bucket writes it
    /// again). A full file is closed and a new one started.
    pub fn file_cap_bytes(&self, sources: u64) -> u64 {
        (self.file_steps + RESTART_SLACK_STEPS) * sources * RECORD_BYTES as u64
    }
}

/// Bucket sets a file has room for beyond its span's own.
pub const RESTART_SLACK_STEPS: u64 = 32;
/// The fine step's range and default (the `historyStepMs` option).
pub const MIN_STEP_MS: u64 = HISTORY_STEP_MS.min as u64;
pub const MAX_STEP_MS: u64 = HISTORY_STEP_MS.max as u64;
pub const DEFAULT_STEP_MS: u64 = HISTORY_STEP_MS.default as u64;
/// The fine step when none is given: the default, or the check interval where that is
/// longer (a bucket no check falls in is a gap), at most [`MAX_STEP_MS`].
pub fn default_step_ms(interval_ms: u64) -> u64 {
    DEFAULT_STEP_MS.max(interval_ms).min(MAX_STEP_MS)
}
/// The coarse tier's step, in fine steps (10 s → 5 min).
pub const COARSE_FACTOR: u64 = 30;
/// GPUs recorded (indexes 0..this); a record holds the index in one byte.
pub const MAX_RECORDED_GPUS: u32 = 64;
/// The largest history file a reader reads (bigger ones are not written here).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The fine tier (every step for 24 h at the default step) and the coarse tier (30
/// steps a bucket, for 7 days at the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPolicy {
    pub fine: Tier,
    pub coarse: Tier,
}

impl HistoryPolicy {
    /// The tiers for a fine step of `step_ms` (clamped to [`MIN_STEP_MS`]..=[`MAX_STEP_MS`]).
    pub fn with_step(step_ms: u64) -> Self {
        let step_ms = step_ms.clamp(MIN_STEP_MS, MAX_STEP_MS);
        HistoryPolicy {
            fine: Tier { prefix: "history-fine-", step_ms, retention_steps: 8640, file_steps: 360 },
            coarse: Tier {
                prefix: "history-coarse-",
                step_ms: step_ms * COARSE_FACTOR,
                retention_steps: 2016,
                file_steps: 288,
            },
        }
    }

    pub fn tiers(&self) -> [Tier; 2] {
        [self.fine, self.coarse]
    }

    /// The most bytes the history's files take with `gpus` GPUs, whatever the clock does
    /// (each tier keeps at most `max_files` files of at most `file_cap_bytes`).
    pub fn disk_bound_bytes(&self, gpus: u32) -> u64 {
        let sources = 1 + u64::from(gpus.min(MAX_RECORDED_GPUS));
        self.tiers().iter().map(|t| t.max_files() * t.file_cap_bytes(sources)).sum()
    }
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        HistoryPolicy::with_step(DEFAULT_STEP_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_step_follows_a_longer_interval() {
        assert_eq!(default_step_ms(5_000), 10_000);
        assert_eq!(default_step_ms(60_000), 60_000);
        assert_eq!(default_step_ms(86_400_000), MAX_STEP_MS);
    }

    #[test]
    fn the_default_tiers_and_their_bound() {
        let p = HistoryPolicy::default();
        assert_eq!(p.fine.retention_ms(), 24 * 3_600_000);
        assert_eq!(p.coarse.step_ms, 300_000);
        assert_eq!(p.coarse.retention_ms(), 7 * 24 * 3_600_000);
        let bound = p.disk_bound_bytes(8);
        assert!(bound < 20 << 20, "8 GPUs over 7 days: {bound} bytes");
        assert_eq!(bound, 10_353_024, "as documented in durable::format");
        assert!(bound > 9 << 20, "{bound}: the bound counts every record the retention keeps");
    }
}
