//! The GPU health monitor: NVML signals, Xid events from the background watch, and the
//! allocator reports of the CUDA worker, judged by the GPU health rules.

use crate::policy::gpu_health::{evaluate_gpu_health, fragmentation, AllocatorUse, DeviceVerdict};
use crate::policy::issues::HealthIssue;
use crate::policy::thresholds::{GpuHealthPolicy, MAX_ALLOCATOR_REPORTS};
use crate::sampling::gpu::{sample_gpus, GpuDetail, GpuDeviceSample};
use crate::sampling::nvml_session::NvmlSession;
use crate::sampling::unix_time_ms;
use crate::sampling::xid_watch::{shared_xid_watch, WatchState, XidEvent, XidWatch};
use crate::sync::lock;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

/// One report from a worker's caching allocator (e.g. `torch.cuda.memory_allocated()` and
/// `memory_reserved()`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllocatorReport {
    pub device: u32,
    pub allocated: u64,
    pub reserved: u64,
    /// The reporting process; reports of different processes on one device add up.
    pub pid: u32,
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRejected(pub String);

impl fmt::Display for ReportRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
pub struct DeviceHealth {
    pub sample: GpuDeviceSample,
    pub verdict: DeviceVerdict,
    pub allocator: Option<AllocatorUse>,
}

#[derive(Debug, Clone)]
pub struct GpuHealthReport {
    pub timestamp_ms: f64,
    pub memory_fragmentation: f64,
    pub temperature: Option<u32>,
    pub memory_allocated: u64,
    pub memory_reserved: u64,
    pub healthy: bool,
    pub status: &'static str,
    pub gpu_available: bool,
    pub gpu_error: Option<String>,
    pub devices: Vec<DeviceHealth>,
    pub issues: Vec<HealthIssue>,
    /// `None` when Xid watching is off.
    pub xid_watch: Option<WatchState>,
}

/// The latest report per (device, pid), with when it came, bounded by `MAX_ALLOCATOR_REPORTS`:
/// a new key in a full table evicts the least recently reported key. Expired reports are
/// always the least recent, so they go first; a peer reporting for ever new pids only ever
/// displaces its own older reports once the live ones are the newest.
#[derive(Default)]
struct ReportTable {
    latest: BTreeMap<(u32, u32), (AllocatorReport, f64, u64)>,
    /// Keys by the sequence number of their latest report; the first is the least recent.
    order: BTreeMap<u64, (u32, u32)>,
    next_seq: u64,
}

impl ReportTable {
    fn insert(&mut self, report: AllocatorReport, at_ms: f64) {
        let key = (report.device, report.pid);
        if let Some((_, _, seq)) = self.latest.get(&key) {
            self.order.remove(seq);
        } else if self.latest.len() >= MAX_ALLOCATOR_REPORTS {
            if let Some((_, least_recent)) = self.order.pop_first() {
                self.latest.remove(&least_recent);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key);
        self.latest.insert(key, (report, at_ms, seq));
    }

    fn drop_older_than(&mut self, cutoff_ms: f64) {
        self.latest.retain(|_, (_, at, _)| *at >= cutoff_ms);
        let latest = &self.latest;
        self.order.retain(|_, key| latest.contains_key(key));
    }
}

pub struct GpuHealthMonitor {
    session: Arc<NvmlSession>,
    policy: RwLock<GpuHealthPolicy>,
    reports: Mutex<ReportTable>,
    xid_watch: Option<Arc<XidWatch>>,
}

impl GpuHealthMonitor {
    pub fn new(session: Arc<NvmlSession>, policy: GpuHealthPolicy, watch_xid: bool) -> Self {
        let xid_watch = watch_xid.then(|| shared_xid_watch(&session));
        GpuHealthMonitor { session, policy: RwLock::new(policy), reports: Mutex::default(), xid_watch }
    }

    pub fn session(&self) -> &Arc<NvmlSession> {
        &self.session
    }

    pub fn policy(&self) -> GpuHealthPolicy {
        *crate::sync::read(&self.policy)
    }

    pub fn set_policy(&self, policy: GpuHealthPolicy) {
        *crate::sync::write(&self.policy) = policy;
    }

    /// Wakes `handle` at each Xid event and when a watched device is lost (nothing when Xid
    /// watching is off).
    pub fn wake_on_events(&self, handle: crate::wake::WakeHandle) {
        if let Some(watch) = &self.xid_watch {
            watch.wake_on_events(handle);
        }
    }

    /// Every Xid event seen since the process started, by (device, Xid); empty when Xid
    /// watching is off.
    pub fn xid_totals(&self) -> BTreeMap<(u32, u64), u64> {
        self.xid_watch.as_ref().map(|w| w.totals()).unwrap_or_default()
    }

    /// Accepts a report for a device NVML showed last time it was asked (or that
    /// `expectedGpus` promises). A report replaces the same (device, pid)'s; the table keeps
    /// at most `MAX_ALLOCATOR_REPORTS` (see `ReportTable`).
    pub fn report_allocator_stats(&self, report: AllocatorReport) -> Result<(), ReportRejected> {
        let limit = self.session.device_count().max(self.policy().expected_gpus.unwrap_or(0));
        if report.device >= limit {
            return Err(ReportRejected(if limit == 0 {
                format!("device must be the index of a known GPU, got {}; no GPU is known yet (run checkGpuHealth() first, or set expectedGpus)", report.device)
            } else {
                format!("device must be an integer in [0, {}], got {}", limit - 1, report.device)
            }));
        }
        if report.allocated > report.reserved {
            return Err(ReportRejected(format!(
                "allocated must be at most reserved, got allocated {} > reserved {}",
                report.allocated, report.reserved
            )));
        }
        lock(&self.reports).insert(report, unix_time_ms());
        Ok(())
    }

    /// How many reports the table holds now (at most `MAX_ALLOCATOR_REPORTS`).
    pub fn allocator_report_count(&self) -> usize {
        lock(&self.reports).latest.len()
    }

    /// Fresh reports summed per device; stale ones are dropped.
    fn allocator_use(&self, now_ms: f64, max_age_ms: f64) -> BTreeMap<u32, AllocatorUse> {
        let mut reports = lock(&self.reports);
        reports.drop_older_than(now_ms - max_age_ms);
        let mut per_device: BTreeMap<u32, AllocatorUse> = BTreeMap::new();
        for (report, at, _) in reports.latest.values() {
            let entry = per_device.entry(report.device).or_insert(AllocatorUse {
                allocated: 0,
                reserved: 0,
                fragmentation: 0.0,
                reported_at_ms: *at,
            });
            entry.allocated += report.allocated;
            entry.reserved += report.reserved;
            entry.fragmentation = entry.fragmentation.max(fragmentation(report.allocated, report.reserved));
            entry.reported_at_ms = entry.reported_at_ms.max(*at);
        }
        per_device
    }

    /// Samples every device now and judges it.
    pub fn check_gpu_health(&self) -> GpuHealthReport {
        self.check_gpu_health_with(GpuDetail::Health)
    }

    /// The same rules over what `detail` reads: `Quick` reads memory and temperature only.
    pub fn check_gpu_health_with(&self, detail: GpuDetail) -> GpuHealthReport {
        let policy = self.policy();
        let sample = sample_gpus(&self.session, detail);
        let now = unix_time_ms();
        let allocator = self.allocator_use(now, policy.allocator_report_max_age_ms);
        let xids: Vec<XidEvent> =
            self.xid_watch.as_ref().map(|w| w.events_since(now - policy.xid_window_ms)).unwrap_or_default();
        let mut verdict = evaluate_gpu_health(&sample, &allocator, &xids, &policy);
        let temperature = sample.devices.iter().filter_map(|d| d.signals.as_ref()?.temperature).max();
        let devices = sample
            .devices
            .iter()
            .map(|d| DeviceHealth {
                sample: d.clone(),
                verdict: verdict.devices.remove(&d.index).expect("every sampled device has a verdict"),
                allocator: allocator.get(&d.index).copied(),
            })
            .collect();
        GpuHealthReport {
            timestamp_ms: now,
            memory_fragmentation: allocator.values().map(|a| a.fragmentation).fold(0.0, f64::max),
            temperature,
            memory_allocated: allocator.values().map(|a| a.allocated).sum(),
            memory_reserved: allocator.values().map(|a| a.reserved).sum(),
            healthy: verdict.healthy,
            status: verdict.status,
            gpu_available: sample.available,
            gpu_error: sample.error,
            devices,
            issues: verdict.issues,
            xid_watch: self.xid_watch.as_ref().map(|w| w.state()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::nvml_session::shared_session;
    use std::ffi::OsStr;

    /// A monitor without NVML that takes reports for device 0 (`expectedGpus: 1`).
    fn monitor() -> GpuHealthMonitor {
        let policy = GpuHealthPolicy { expected_gpus: Some(1), ..GpuHealthPolicy::default() };
        GpuHealthMonitor::new(shared_session(OsStr::new("/nonexistent/libnvidia-ml.so.1")), policy, false)
    }

    fn report(pid: u32) -> AllocatorReport {
        AllocatorReport { device: 0, allocated: 1, reserved: 2, pid }
    }

    fn pids(monitor: &GpuHealthMonitor) -> Vec<u32> {
        monitor.reports.lock().unwrap().latest.keys().map(|&(_, pid)| pid).collect()
    }

    #[test]
    fn the_report_table_is_bounded_and_evicts_the_least_recent() {
        let monitor = monitor();
        let extra = 10;
        for pid in 1..=(MAX_ALLOCATOR_REPORTS as u32 + extra) {
            monitor.report_allocator_stats(report(pid)).unwrap();
        }
        assert_eq!(monitor.allocator_report_count(), MAX_ALLOCATOR_REPORTS);
        let kept = pids(&monitor);
        assert_eq!(kept.first(), Some(&(extra + 1)), "the first {extra} reported are the ones evicted");
        assert_eq!(kept.last(), Some(&(MAX_ALLOCATOR_REPORTS as u32 + extra)));
        let table = monitor.reports.lock().unwrap();
        assert_eq!(table.order.len(), MAX_ALLOCATOR_REPORTS, "the order index is bounded too");
    }

    #[test]
    fn a_full_table_keeps_the_keys_reported_again_and_evicts_expired_reports_first() {
        let monitor = monitor();
        for pid in 1..=MAX_ALLOCATOR_REPORTS as u32 {
            monitor.report_allocator_stats(report(pid)).unwrap();
        }
        // Re-reporting a known key does not evict anything, and makes it the most recent.
        monitor.report_allocator_stats(report(1)).unwrap();
        assert_eq!(monitor.allocator_report_count(), MAX_ALLOCATOR_REPORTS);
        monitor.report_allocator_stats(report(100_000)).unwrap();
        let kept = pids(&monitor);
        assert!(kept.contains(&1) && !kept.contains(&2), "pid 2 was the least recent, not pid 1");
        // A report that has expired goes before any live one.
        monitor.reports.lock().unwrap().latest.get_mut(&(0, 500)).unwrap().1 = 0.0;
        monitor.allocator_use(unix_time_ms(), 60_000.0);
        assert!(!pids(&monitor).contains(&500));
        assert_eq!(monitor.allocator_report_count(), MAX_ALLOCATOR_REPORTS - 1);
        monitor.report_allocator_stats(report(100_001)).unwrap();
        assert_eq!(monitor.allocator_report_count(), MAX_ALLOCATOR_REPORTS, "room was made by the expired one");
        assert!(pids(&monitor).contains(&3), "no live report was evicted");
    }
}
