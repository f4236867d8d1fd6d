//! The memory-pressure rules of the requirements, per device for GPUs.

use super::thresholds::MemoryThresholds;
use crate::sampling::memory::MemoryMetrics;

#[derive(Debug, Clone, PartialEq)]
pub struct DevicePressure {
    pub index: u32,
    /// `used / total`; `None` for a lost device or one whose memory could not be read.
    pub ratio: Option<f64>,
    pub pressure: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPressure {
    /// Any single device above `thresholds.gpu_memory`: one full GPU is an out-of-memory
    /// waiting to happen even when the sum over all GPUs looks fine.
    pub gpu_pressure: bool,
    pub system_pressure: bool,
    /// The highest device ratio (0 without GPUs).
    pub gpu_ratio: f64,
    pub system_ratio: f64,
    pub gpus: Vec<DevicePressure>,
}

fn ratio(used: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| used as f64 / total as f64)
}

pub fn evaluate_memory_pressure(metrics: &MemoryMetrics, thresholds: &MemoryThresholds) -> MemoryPressure {
    let gpus: Vec<DevicePressure> = metrics
        .gpus
        .iter()
        .map(|d| {
            let ratio = if d.lost { None } else { ratio(d.used, d.total) };
            DevicePressure { index: d.index, ratio, pressure: ratio.is_some_and(|r| r > thresholds.gpu_memory) }
        })
        .collect();
    let gpu_ratio = gpus.iter().filter_map(|d| d.ratio).fold(0.0, f64::max);
    let system_ratio = ratio(metrics.system_used, metrics.system_total).unwrap_or(0.0);
    MemoryPressure {
        gpu_pressure: gpus.iter().any(|d| d.pressure),
        system_pressure: system_ratio > thresholds.system_memory,
        gpu_ratio,
        system_ratio,
        gpus,
    }
}

/// Pressure as health issues: one for the system, one per device under pressure.
pub fn pressure_issues(
    pressure: &MemoryPressure,
    metrics: &MemoryMetrics,
    thresholds: &MemoryThresholds,
) -> Vec<super::issues::HealthIssue> {
    use super::issues::{HealthIssue, IssueCode};
    let mut issues = Vec::new();
    if pressure.system_pressure {
        issues.push(HealthIssue::new(
            IssueCode::SystemMemoryPressure,
            None,
            format!(
                "system memory is {:.0}% used of {} bytes ({} limit), above the {:.0}% threshold",
                pressure.system_ratio * 100.0,
                metrics.system_total,
                metrics.memory_limit_source.as_str(),
                thresholds.system_memory * 100.0
            ),
        ));
    }
    for device in pressure.gpus.iter().filter(|d| d.pressure) {
        issues.push(HealthIssue::new(
            IssueCode::GpuMemoryPressure,
            Some(device.index),
            format!(
                "GPU {} memory is {:.0}% used, above the {:.0}% threshold",
                device.index,
                device.ratio.unwrap_or(0.0) * 100.0,
                thresholds.gpu_memory * 100.0
            ),
        ));
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::gpu::GpuDeviceSample;
    use crate::sampling::memory::MemoryLimitSource;

    fn device(index: u32, used: u64, total: u64, lost: bool) -> GpuDeviceSample {
        GpuDeviceSample { index, uuid: None, name: None, used, total, lost, error: None, signals: None }
    }

    fn metrics(system_used: u64, system_total: u64, gpus: Vec<GpuDeviceSample>) -> MemoryMetrics {
        MemoryMetrics {
            timestamp_ms: 0.0,
            gpu_used: gpus.iter().map(|d| d.used).sum(),
            gpu_total: gpus.iter().map(|d| d.total).sum(),
            system_used,
            system_total,
            system_error: None,
            memory_limit_source: MemoryLimitSource::Host,
            psi: None,
            gpu_available: !gpus.is_empty(),
            gpu_error: None,
            gpus,
            cgroup: None,
        }
    }

    #[test]
    fn one_full_device_is_pressure_even_when_the_sum_is_low() {
        let m = metrics(10, 100, vec![device(0, 90, 100, false), device(1, 0, 100, false), device(2, 0, 100, false)]);
        let p = evaluate_memory_pressure(&m, &MemoryThresholds::default());
        assert!(p.gpu_pressure);
        assert_eq!(p.gpu_ratio, 0.9);
        assert_eq!(p.gpus.iter().map(|d| d.pressure).collect::<Vec<_>>(), [true, false, false]);
        assert!(!p.system_pressure);
    }

    #[test]
    fn threshold_is_strictly_above() {
        let t = MemoryThresholds { gpu_memory: 0.5, system_memory: 0.5, warning_interval_ms: 0.0 };
        let at = evaluate_memory_pressure(&metrics(50, 100, vec![device(0, 50, 100, false)]), &t);
        assert!(!at.gpu_pressure && !at.system_pressure);
        let above = evaluate_memory_pressure(&metrics(51, 100, vec![device(0, 51, 100, false)]), &t);
        assert!(above.gpu_pressure && above.system_pressure);
    }

    #[test]
    fn lost_and_unreadable_devices_have_no_ratio() {
        let m = metrics(0, 100, vec![device(0, 99, 100, true), device(1, 0, 0, false)]);
        let p = evaluate_memory_pressure(&m, &MemoryThresholds::default());
        assert_eq!(p.gpus[0].ratio, None);
        assert_eq!(p.gpus[1].ratio, None);
        assert!(!p.gpu_pressure);
        assert_eq!(p.gpu_ratio, 0.0);
    }

    #[test]
    fn no_gpus_and_zero_total_are_calm() {
        let p = evaluate_memory_pressure(&metrics(0, 0, vec![]), &MemoryThresholds::default());
        assert!(!p.gpu_pressure && !p.system_pressure);
        assert_eq!((p.gpu_ratio, p.system_ratio), (0.0, 0.0));
    }
}
