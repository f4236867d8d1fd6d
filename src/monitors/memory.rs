//! The memory monitor of the requirements (§1 "Memory Pressure Detection").

use crate::policy::pressure::{evaluate_memory_pressure, MemoryPressure};
use crate::policy::thresholds::MemoryThresholds;
use crate::sampling::memory::{MemoryMetrics, MemorySampler};
use std::sync::RwLock;

pub struct MemoryMonitor {
    sampler: MemorySampler,
    thresholds: RwLock<MemoryThresholds>,
}

impl MemoryMonitor {
    pub fn new(sampler: MemorySampler, thresholds: MemoryThresholds) -> Self {
        MemoryMonitor { sampler, thresholds: RwLock::new(thresholds) }
    }

    pub fn sampler(&self) -> &MemorySampler {
        &self.sampler
    }

    pub fn thresholds(&self) -> MemoryThresholds {
        *crate::sync::read(&self.thresholds)
    }

    pub fn set_thresholds(&self, thresholds: MemoryThresholds) {
        *crate::sync::write(&self.thresholds) = thresholds;
    }

    pub fn get_memory_metrics(&self) -> MemoryMetrics {
        self.sampler.sample_memory_metrics()
    }

    /// Samples now and judges the sample against the current thresholds.
    pub fn check_memory_pressure(&self) -> (MemoryPressure, MemoryMetrics) {
        let metrics = self.sampler.sample_memory_metrics();
        (evaluate_memory_pressure(&metrics, &self.thresholds()), metrics)
    }
}
