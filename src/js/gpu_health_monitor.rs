//! `GPUHealthMonitor`: DCGM-grade GPU health from NVML, with Xid watching.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown};
use napi_derive::napi;
use std::sync::Arc;

use super::args::{frozen, range_error, range_violation, OptionsObject};
use super::task::{Job, OffThread};
use crate::monitors::gpu_health::{AllocatorReport, DeviceHealth, GpuHealthMonitor as Core, GpuHealthReport};
use crate::policy::issues::HealthIssue as CoreIssue;
use crate::policy::thresholds::{
    GpuHealthPolicy, ThresholdSpec, ALLOCATOR_REPORT_MAX_AGE_MS, EXPECTED_GPUS, GPU_THRESHOLDS, MEMORY_FRAGMENTATION,
    REPORT_ALLOCATED, REPORT_DEVICE, REPORT_PID, REPORT_RESERVED, TEMPERATURE, XID_WINDOW_MS,
};
use crate::policy::xid_catalog::classify_xid;
use crate::sampling::gpu::decode_throttle_reasons;
use crate::sampling::nvml_session::{resolve_nvml_library, shared_session};
use crate::sampling::xid_watch::WatchState;

const OPTION_NAMES: &[&str] =
    &["thresholds", "expectedGpus", "xidWindowMs", "allocatorReportMaxAgeMs", "watchXid", "nvmlLibraryPath"];
const STATS_NAMES: &[&str] = &["device", "allocated", "reserved", "pid"];

#[napi(object)]
pub struct GpuThresholds {
    /// °C at or above which a device fails (`TEMPERATURE_HIGH`).
    pub temperature: f64,
    /// Allocator fragmentation at or above which a device fails (`FRAGMENTATION_HIGH`).
    #[napi(js_name = "memory_fragmentation")]
    pub memory_fragmentation: f64,
}

#[allow(dead_code)]
#[napi(object)]
pub struct GpuThresholdsInput {
    pub temperature: Option<f64>,
    #[napi(js_name = "memory_fragmentation")]
    pub memory_fragmentation: Option<f64>,
}

/// Options of `new GPUHealthMonitor(options)`; declared for the typings, read by hand.
#[allow(dead_code)]
#[napi(object)]
pub struct GpuHealthMonitorOptions {
    pub thresholds: Option<GpuThresholdsInput>,
    /// Fewer visible GPUs than this is `GPU_MISSING`; `null` (default) expects nothing.
    pub expected_gpus: Option<u32>,
    /// How long an Xid event counts in the verdict (default one hour).
    pub xid_window_ms: Option<f64>,
    /// How long an allocator report counts (default five minutes).
    pub allocator_report_max_age_ms: Option<f64>,
    /// Watch for Xid events in the background (default true).
    pub watch_xid: Option<bool>,
    pub nvml_library_path: Option<String>,
}

/// A report from the CUDA worker's caching allocator.
#[allow(dead_code)]
#[napi(object)]
pub struct AllocatorStats {
    pub device: u32,
    /// Bytes in use by tensors, e.g. `torch.cuda.memory_allocated(device)`.
    pub allocated: f64,
    /// Bytes the allocator holds, e.g. `torch.cuda.memory_reserved(device)`.
    pub reserved: f64,
    /// The reporting process; reports of different processes on one device add up.
    pub pid: Option<u32>,
}

#[derive(serde::Serialize)]
#[napi(object, use_nullable = true)]
pub struct HealthIssue {
    pub code: String,
    #[napi(ts_type = "'warn' | 'fail'")]
    pub severity: String,
    pub device: Option<u32>,
    pub message: String,
    #[napi(ts_type = "'none' | 'clear_cache' | 'restart_app' | 'reset_gpu' | 'reboot_node'")]
    pub action: String,
}

impl From<CoreIssue> for HealthIssue {
    fn from(issue: CoreIssue) -> Self {
        HealthIssue {
            code: issue.code.as_str().to_owned(),
            severity: issue.severity.as_str().to_owned(),
            device: issue.device,
            message: issue.message,
            action: issue.action.as_str().to_owned(),
        }
    }
}

#[derive(serde::Serialize)]
#[napi(object)]
pub struct XidError {
    pub code: f64,
    pub timestamp: f64,
    #[napi(ts_type = "'none' | 'clear_cache' | 'restart_app' | 'reset_gpu' | 'reboot_node'")]
    pub action: String,
}

#[derive(serde::Serialize)]
#[napi(object)]
pub struct RemappedRows {
    pub correctable: u32,
    pub uncorrectable: u32,
    pub pending: bool,
    pub failure: bool,
}

#[derive(serde::Serialize)]
#[napi(object)]
pub struct AllocatorUse {
    pub allocated: f64,
    pub reserved: f64,
    pub fragmentation: f64,
    #[napi(js_name = "reported_at")]
    pub reported_at: f64,
}

#[derive(serde::Serialize)]
#[napi(object, use_nullable = true)]
pub struct GpuDeviceHealth {
    pub index: u32,
    pub uuid: Option<String>,
    pub name: Option<String>,
    #[napi(ts_type = "'pass' | 'warn' | 'fail'")]
    pub status: String,
    pub temperature: Option<u32>,
    #[napi(js_name = "slowdown_temperature")]
    pub slowdown_temperature: Option<u32>,
    #[napi(js_name = "shutdown_temperature")]
    pub shutdown_temperature: Option<u32>,
    #[napi(js_name = "memory_used")]
    pub memory_used: f64,
    #[napi(js_name = "memory_total")]
    pub memory_total: f64,
    pub utilization: Option<u32>,
    #[napi(js_name = "power_watts")]
    pub power_watts: Option<f64>,
    #[napi(js_name = "power_limit_watts")]
    pub power_limit_watts: Option<f64>,
    #[napi(js_name = "throttle_reasons")]
    pub throttle_reasons: Option<Vec<String>>,
    #[napi(js_name = "ecc_uncorrected")]
    pub ecc_uncorrected: Option<f64>,
    #[napi(js_name = "retired_pages_pending")]
    pub retired_pages_pending: Option<bool>,
    #[napi(js_name = "remapped_rows")]
    pub remapped_rows: Option<RemappedRows>,
    #[napi(js_name = "xid_errors")]
    pub xid_errors: Vec<XidError>,
    pub lost: bool,
    pub allocator: Option<AllocatorUse>,
    pub error: Option<String>,
}

impl From<DeviceHealth> for GpuDeviceHealth {
    fn from(d: DeviceHealth) -> Self {
        let signals = d.sample.signals.unwrap_or_default();
        GpuDeviceHealth {
            index: d.sample.index,
            uuid: d.sample.uuid,
            name: d.sample.name,
            status: d.verdict.status.to_owned(),
            temperature: signals.temperature,
            slowdown_temperature: signals.slowdown_temperature,
            shutdown_temperature: signals.shutdown_temperature,
            memory_used: d.sample.used as f64,
            memory_total: d.sample.total as f64,
            utilization: signals.utilization,
            power_watts: signals.power_watts,
            power_limit_watts: signals.power_limit_watts,
            throttle_reasons: signals.throttle_reasons.map(decode_throttle_reasons),
            ecc_uncorrected: signals.ecc_uncorrected.map(|c| c as f64),
            retired_pages_pending: signals.retired_pages_pending,
            remapped_rows: signals.remapped_rows.map(|r| RemappedRows {
                correctable: r.correctable,
                uncorrectable: r.uncorrectable,
                pending: r.pending,
                failure: r.failure,
            }),
            xid_errors: d
                .verdict
                .xid_errors
                .into_iter()
                .map(|e| XidError {
                    code: e.code as f64,
                    timestamp: e.timestamp_ms,
                    action: classify_xid(e.code).action.as_str().to_owned(),
                })
                .collect(),
            lost: d.sample.lost,
            allocator: d.allocator.map(|a| AllocatorUse {
                allocated: a.allocated as f64,
                reserved: a.reserved as f64,
                fragmentation: a.fragmentation,
                reported_at: a.reported_at_ms,
            }),
            error: d.sample.error,
        }
    }
}

/// Whether the background Xid watch is working.
#[derive(serde::Serialize)]
#[napi(object, use_nullable = true)]
pub struct XidWatchStatus {
    #[napi(ts_type = "'starting' | 'watching' | 'retrying'")]
    pub state: String,
    /// Indices of the devices being watched.
    pub devices: Vec<u32>,
    pub error: Option<String>,
}

#[derive(serde::Serialize)]
#[napi(object, use_nullable = true)]
pub struct GpuHealth {
    pub timestamp: f64,
    #[napi(js_name = "memory_fragmentation")]
    pub memory_fragmentation: f64,
    pub temperature: Option<u32>,
    #[napi(js_name = "memory_allocated")]
    pub memory_allocated: f64,
    #[napi(js_name = "memory_reserved")]
    pub memory_reserved: f64,
    pub healthy: bool,
    #[napi(ts_type = "'pass' | 'warn' | 'fail'")]
    pub status: String,
    #[napi(js_name = "gpu_available")]
    pub gpu_available: bool,
    #[napi(js_name = "gpu_error")]
    pub gpu_error: Option<String>,
    pub devices: Vec<GpuDeviceHealth>,
    pub issues: Vec<HealthIssue>,
    #[napi(js_name = "xid_watch")]
    pub xid_watch: Option<XidWatchStatus>,
}

impl From<GpuHealthReport> for GpuHealth {
    fn from(r: GpuHealthReport) -> Self {
        GpuHealth {
            timestamp: r.timestamp_ms,
            memory_fragmentation: r.memory_fragmentation,
            temperature: r.temperature,
            memory_allocated: r.memory_allocated as f64,
            memory_reserved: r.memory_reserved as f64,
            healthy: r.healthy,
            status: r.status.to_owned(),
            gpu_available: r.gpu_available,
            gpu_error: r.gpu_error,
            devices: r.devices.into_iter().map(Into::into).collect(),
            issues: r.issues.into_iter().map(Into::into).collect(),
            xid_watch: r.xid_watch.map(|state| match state {
                WatchState::Starting => XidWatchStatus { state: "starting".into(), devices: vec![], error: None },
                WatchState::Watching(devices) => XidWatchStatus { state: "watching".into(), devices, error: None },
                WatchState::Retrying(error) => {
                    XidWatchStatus { state: "retrying".into(), devices: vec![], error: Some(error) }
                }
            }),
        }
    }
}

fn checked(env: &Env, spec: ThresholdSpec, value: f64) -> Result<f64> {
    spec.check(value).map_err(|v| range_violation(env, v))
}

/// Reads `thresholds` over `base`: keys given replace, keys left out keep `base`.
fn read_thresholds(env: &Env, given: &OptionsObject, base: GpuHealthPolicy) -> Result<GpuHealthPolicy> {
    let mut policy = base;
    if let Some(t) = given.number(TEMPERATURE.key())? {
        policy.temperature = checked(env, TEMPERATURE, t)?;
    }
    if let Some(f) = given.number(MEMORY_FRAGMENTATION.key())? {
        policy.memory_fragmentation = checked(env, MEMORY_FRAGMENTATION, f)?;
    }
    Ok(policy)
}

fn threshold_names() -> [&'static str; 2] {
    GPU_THRESHOLDS.map(|spec| spec.key())
}

/// GPU health in one call: temperatures, throttling, ECC, retired pages and row remapping,
/// lost and missing devices, allocator fragmentation and critical Xid events.
#[napi(js_name = "GPUHealthMonitor")]
pub struct GpuHealthMonitor {
    pub(crate) core: Arc<Core>,
}

#[napi]
impl GpuHealthMonitor {
    #[napi(constructor, ts_args_type = "options?: GpuHealthMonitorOptions")]
    pub fn new(env: Env, this: This<Unknown>, options: Option<Unknown>) -> Result<Self> {
        super::task::guarded(&env, "GPUHealthMonitor.constructor", || {
            super::receiver::require_new::<Self>(&env, &this, "GPUHealthMonitor")?;
            let options = OptionsObject::read(&env, options, "options", OPTION_NAMES)?;
            let mut policy = GpuHealthPolicy::default();
            let mut library = None;
            let mut watch_xid = true;
            if let Some(options) = options {
                if let Some(given) = options.object("thresholds", &threshold_names())? {
                    policy = read_thresholds(&env, &given, policy)?;
                }
                if let Some(expected) = options.optional_number(EXPECTED_GPUS.name)? {
                    policy.expected_gpus = Some(checked(&env, EXPECTED_GPUS, expected)? as u32);
                }
                if let Some(window) = options.number(XID_WINDOW_MS.name)? {
                    policy.xid_window_ms = checked(&env, XID_WINDOW_MS, window)?;
                }
                if let Some(age) = options.number(ALLOCATOR_REPORT_MAX_AGE_MS.name)? {
                    policy.allocator_report_max_age_ms = checked(&env, ALLOCATOR_REPORT_MAX_AGE_MS, age)?;
                }
                watch_xid = options.boolean("watchXid")?.unwrap_or(true);
                library = options.string("nvmlLibraryPath")?;
            }
            let session = shared_session(&resolve_nvml_library(library.as_deref()));
            Ok(GpuHealthMonitor { core: Arc::new(Core::new(session, policy, watch_xid)) })
        })
    }

    /// The current thresholds, as a frozen copy: assign a new object to change them.
    #[napi(getter, ts_return_type = "GpuThresholds")]
    pub fn get_thresholds<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        super::task::guarded(env, "GPUHealthMonitor.thresholds", || {
            let policy = self.core.policy();
            frozen(
                env,
                GpuThresholds { temperature: policy.temperature, memory_fragmentation: policy.memory_fragmentation },
            )
        })
    }

    /// Replaces the thresholds given; those left out keep their current values.
    #[napi(setter, js_name = "thresholds", ts_args_type = "value: GpuThresholdsInput")]
    pub fn set_thresholds(&self, env: Env, value: Unknown) -> Result<()> {
        super::task::guarded(&env, "GPUHealthMonitor.thresholds", || {
            let given = OptionsObject::required(&env, Some(value), "thresholds", &threshold_names())?;
            let policy = read_thresholds(&env, &given, self.core.policy())?;
            self.core.set_policy(policy);
            Ok(())
        })
    }

    /// Every signal of every device, judged; see the README for each issue code.
    #[napi(ts_return_type = "Promise<GpuHealth>")]
    pub fn check_gpu_health(&self, env: Env) -> Result<AsyncTask<Job<CheckGpuHealth>>> {
        super::task::guarded(&env, "GPUHealthMonitor.checkGpuHealth", || {
            Ok(AsyncTask::new(Job(CheckGpuHealth(self.core.clone()))))
        })
    }

    /// `true` when no device has a `fail` issue (every device below the temperature
    /// threshold, fragmentation below its threshold, nothing lost or missing).
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn is_gpu_healthy(&self, env: Env) -> Result<AsyncTask<Job<IsGpuHealthy>>> {
        super::task::guarded(&env, "GPUHealthMonitor.isGpuHealthy", || {
            Ok(AsyncTask::new(Job(IsGpuHealthy(self.core.clone()))))
        })
    }

    /// Records what the worker's caching allocator holds and uses on a device; NVML cannot
    /// see inside an allocator.
    #[napi(ts_args_type = "stats: AllocatorStats")]
    pub fn report_allocator_stats(&self, env: Env, stats: Unknown) -> Result<()> {
        super::task::guarded(&env, "GPUHealthMonitor.reportAllocatorStats", || {
            let stats = OptionsObject::required(&env, Some(stats), "stats", STATS_NAMES)?;
            let device = checked(&env, REPORT_DEVICE, stats.required_number("device")?)?;
            let allocated = checked(&env, REPORT_ALLOCATED, stats.required_number("allocated")?)?;
            let reserved = checked(&env, REPORT_RESERVED, stats.required_number("reserved")?)?;
            let pid = stats.number("pid")?.map(|p| checked(&env, REPORT_PID, p)).transpose()?;
            let report = AllocatorReport {
                device: device as u32,
                allocated: allocated as u64,
                reserved: reserved as u64,
                pid: pid.unwrap_or(0.0) as u32,
            };
            self.core.report_allocator_stats(report).map_err(|e| range_error(&env, format!("stats.{e}")))
        })
    }
}

pub struct CheckGpuHealth(Arc<Core>);

impl OffThread for CheckGpuHealth {
    type Output = GpuHealthReport;
    type Js = GpuHealth;
    fn run(&self) -> GpuHealthReport {
        self.0.check_gpu_health()
    }
    fn to_js(output: GpuHealthReport) -> GpuHealth {
        output.into()
    }
}

pub struct IsGpuHealthy(Arc<Core>);

impl OffThread for IsGpuHealthy {
    type Output = bool;
    type Js = bool;
    fn run(&self) -> bool {
        self.0.check_gpu_health().healthy
    }
    fn to_js(output: bool) -> bool {
        output
    }
}
