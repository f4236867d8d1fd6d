//! Confirmed threshold crossings: a memory threshold crossed in [`CROSSING_CONFIRMATIONS`]
//! consecutive fast samples starts an episode without hysteresis; as many below it clear it.

use crate::policy::thresholds::MemoryThresholds;
use crate::sampling::fast::{FastSample, MemorySignal};
use std::collections::BTreeMap;

/// How many consecutive fast samples above a threshold confirm a crossing, and how many
/// below it clear one: one sample alone may be a transient the allocator frees at once.
pub const CROSSING_CONFIRMATIONS: u32 = 2;

/// A crossing confirmed or cleared by the last sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CrossingChange {
    /// The signal was above its threshold in [`CROSSING_CONFIRMATIONS`] consecutive samples.
    Crossed { signal: MemorySignal, ratio: f64 },
    /// The signal was at or below its threshold in as many consecutive samples.
    Cleared { signal: MemorySignal, ratio: f64 },
}

#[derive(Debug, Clone, Copy, Default)]
struct CrossingState {
    crossed: bool,
    /// Consecutive samples on the other side of the threshold from `crossed`.
    streak: u32,
}

/// Confirms and clears threshold crossings per signal. Pure: it sees only the ratios it is
/// given. "Above" is `ratio > threshold`, as in the full check's pressure rule.
#[derive(Debug, Clone, Default)]
pub struct CrossingDetector {
    // Bounded by the signals seen: NVML's device count (at most 64 in practice) plus host.
    signals: BTreeMap<MemorySignal, CrossingState>,
}

impl CrossingDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one reading of `signal`. `ratio` is `None` when it could not be read: an
    /// unreadable sample is not a confirmation, so it breaks a streak either way, and it
    /// leaves a confirmed crossing standing (a lost GPU is another rule's business).
    pub fn observe(&mut self, signal: MemorySignal, ratio: Option<f64>, threshold: f64) -> Option<CrossingChange> {
        let state = self.signals.entry(signal).or_default();
        let Some(ratio) = ratio.filter(|r| r.is_finite()) else {
            state.streak = 0;
            return None;
        };
        let above = ratio > threshold;
        if above == state.crossed {
            state.streak = 0;
            return None;
        }
        state.streak += 1;
        if state.streak < CROSSING_CONFIRMATIONS {
            return None;
        }
        state.crossed = above;
        state.streak = 0;
        Some(if above { CrossingChange::Crossed { signal, ratio } } else { CrossingChange::Cleared { signal, ratio } })
    }

    /// Feeds every signal of `sample`: GPUs against `thresholds.gpu_memory`, host/cgroup
    /// memory against `thresholds.system_memory`.
    pub fn observe_sample(&mut self, sample: &FastSample, thresholds: &MemoryThresholds) -> Vec<CrossingChange> {
        sample
            .readings()
            .into_iter()
            .filter_map(|(signal, reading)| {
                let threshold = match signal {
                    MemorySignal::Gpu(_) => thresholds.gpu_memory,
                    MemorySignal::Host => thresholds.system_memory,
                };
                let ratio = reading.map(|(used, total)| used as f64 / total as f64);
                self.observe(signal, ratio, threshold)
            })
            .collect()
    }

    /// Whether a crossing of `signal` is confirmed and not yet cleared.
    pub fn is_crossed(&self, signal: MemorySignal) -> bool {
        self.signals.get(&signal).is_some_and(|s| s.crossed)
    }

    /// Every signal whose crossing is confirmed and not yet cleared.
    pub fn crossed(&self) -> Vec<MemorySignal> {
        self.signals.iter().filter(|(_, s)| s.crossed).map(|(signal, _)| *signal).collect()
    }

    /// Forgets a signal (a GPU that went away): it starts afresh if it comes back.
    pub fn forget(&mut self, signal: MemorySignal) {
        self.signals.remove(&signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::fast::{GpuMemorySample, HostMemorySample};
    use crate::sampling::memory::MemoryLimitSource;

    #[test]
    fn a_crossing_needs_two_consecutive_samples_and_so_does_clearing() {
        let mut d = CrossingDetector::new();
        let gpu = MemorySignal::Gpu(1);
        assert_eq!(d.observe(gpu, Some(0.95), 0.9), None, "one sample is not a crossing");
        assert_eq!(d.observe(gpu, Some(0.5), 0.9), None);
        assert_eq!(d.observe(gpu, Some(0.95), 0.9), None, "the streak restarted");
        assert_eq!(d.observe(gpu, Some(0.97), 0.9), Some(CrossingChange::Crossed { signal: gpu, ratio: 0.97 }));
        assert!(d.is_crossed(gpu));
        assert_eq!(d.observe(gpu, Some(0.99), 0.9), None, "reported once");
        assert_eq!(d.observe(gpu, Some(0.5), 0.9), None, "one sample below does not clear");
        assert_eq!(d.observe(gpu, Some(0.95), 0.9), None);
        assert_eq!(d.observe(gpu, Some(0.5), 0.9), None);
        assert_eq!(d.observe(gpu, Some(0.9), 0.9), Some(CrossingChange::Cleared { signal: gpu, ratio: 0.9 }));
        assert!(!d.is_crossed(gpu));
        assert_eq!(d.crossed(), vec![]);
    }

    #[test]
    fn signals_are_independent_and_unreadable_samples_break_streaks() {
        let mut d = CrossingDetector::new();
        let (gpu0, gpu1) = (MemorySignal::Gpu(0), MemorySignal::Gpu(1));
        assert_eq!(d.observe(gpu0, Some(0.95), 0.9), None);
        assert_eq!(d.observe(gpu1, Some(0.95), 0.9), None);
        assert_eq!(d.observe(gpu1, None, 0.9), None);
        assert_eq!(d.observe(gpu1, Some(0.95), 0.9), None, "the unreadable sample broke gpu1's streak");
        assert!(matches!(d.observe(gpu0, Some(0.95), 0.9), Some(CrossingChange::Crossed { .. })));
        assert_eq!(d.observe(gpu1, Some(f64::NAN), 0.9), None, "a NaN ratio is no reading");
        assert_eq!(d.observe(gpu0, None, 0.9), None);
        assert!(d.is_crossed(gpu0), "an unreadable sample leaves a crossing standing");
        assert_eq!(d.crossed(), vec![gpu0]);
        d.forget(gpu0);
        assert!(!d.is_crossed(gpu0));
    }

    fn sample(at_ms: f64, gpus: &[(u64, u64)], host: Option<(u64, u64)>) -> FastSample {
        FastSample {
            at_ms,
            gpus: gpus
                .iter()
                .enumerate()
                .map(|(i, &(used, total))| GpuMemorySample { index: i as u32, used, total, lost: false, error: None })
                .collect(),
            gpu_error: None,
            host: host.map(|(used, total)| HostMemorySample { used, total, source: MemoryLimitSource::Cgroup }),
            host_error: None,
        }
    }

    #[test]
    fn samples_are_checked_against_the_gpu_and_system_thresholds() {
        let thresholds = MemoryThresholds { gpu_memory: 0.85, system_memory: 0.5, ..Default::default() };
        let mut d = CrossingDetector::new();
        let s = sample(0.0, &[(80, 100), (90, 100)], Some((60, 100)));
        assert_eq!(d.observe_sample(&s, &thresholds), vec![]);
        let changes = d.observe_sample(&s, &thresholds);
        assert_eq!(
            changes,
            vec![
                CrossingChange::Crossed { signal: MemorySignal::Gpu(1), ratio: 0.9 },
                CrossingChange::Crossed { signal: MemorySignal::Host, ratio: 0.6 },
            ]
        );
        // A lost device is unreadable: no ratio, no confirmation.
        let mut s = sample(0.0, &[(90, 100)], None);
        s.gpus[0].lost = true;
        assert_eq!(s.readings(), vec![(MemorySignal::Gpu(0), None), (MemorySignal::Host, None)]);
    }
}
