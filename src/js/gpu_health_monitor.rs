//! `GPUHealthMonitor`: DCGM-grade GPU health from NVML, with Xid watching.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown};
use napi_derive::napi;
use std::sync::Arc;

use super::args::{frozen, range_error, range_violation, OptionsObject};
use super::json::JsonShape;
use super::task::{Job, OffThread};
use crate::monitors::gpu_health::{AllocatorReport, GpuHealthMonitor as Core, GpuHealthReport};
use crate::policy::thresholds::{
    GpuHealthPolicy, ThresholdSpec, ALLOCATOR_REPORT_MAX_AGE_MS, EXPECTED_GPUS, GPU_THRESHOLDS, MEMORY_FRAGMENTATION,
    REPORT_ALLOCATED, REPORT_DEVICE, REPORT_PID, REPORT_RESERVED, TEMPERATURE, XID_WINDOW_MS,
};
use crate::sampling::nvml_session::{resolve_nvml_library, shared_session};

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
    type Js = JsonShape;
    fn run(&self) -> GpuHealthReport {
        self.0.check_gpu_health()
    }
    fn to_js(output: GpuHealthReport) -> JsonShape {
        JsonShape::of(&output)
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
