//! The GPU health monitor: NVML signals, Xid events from the background watch, and the
//! allocator reports of the CUDA worker, judged by the GPU health rules.

use crate::policy::gpu_health::{evaluate_gpu_health, fragmentation, AllocatorUse, DeviceVerdict};
use crate::policy::issues::HealthIssue;
use crate::policy::thresholds::GpuHealthPolicy;
use crate::sampling::gpu::{sample_gpus, GpuDetail, GpuDeviceSample};
use crate::sampling::nvml_session::NvmlSession;
use crate::sampling::unix_time_ms;
use crate::sampling::xid_watch::{shared_xid_watch, WatchState, XidEvent, XidWatch};
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

pub struct GpuHealthMonitor {
    session: Arc<NvmlSession>,
    policy: RwLock<GpuHealthPolicy>,
    /// Latest report per (device, pid), with when it came.
    reports: Mutex<BTreeMap<(u32, u32), (AllocatorReport, f64)>>,
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
        *self.policy.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_policy(&self, policy: GpuHealthPolicy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Every Xid event seen since the process started, by (device, Xid); empty when Xid
    /// watching is off.
    pub fn xid_totals(&self) -> BTreeMap<(u32, u64), u64> {
        self.xid_watch.as_ref().map(|w| w.totals()).unwrap_or_default()
    }

    /// Accepts a report for a device NVML showed last time it was asked (or that
    /// `expectedGpus` promises).
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
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports.insert((report.device, report.pid), (report, unix_time_ms()));
        Ok(())
    }

    /// Fresh reports summed per device; stale ones are dropped.
    fn allocator_use(&self, now_ms: f64, max_age_ms: f64) -> BTreeMap<u32, AllocatorUse> {
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports.retain(|_, (_, at)| now_ms - *at <= max_age_ms);
        let mut per_device: BTreeMap<u32, AllocatorUse> = BTreeMap::new();
        for (report, at) in reports.values() {
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
