//! `GPUHealthMonitor`: DCGM-grade GPU health from NVML, with Xid watching.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown};
use napi_derive::napi;
use std::sync::Arc;

use super::args::{frozen, range_error};
use super::input::{js_fields, Fields, Nullable};
use super::json::JsonShape;
use super::task::{Job, OffThread};
use crate::monitors::gpu_health::{AllocatorReport, GpuHealthMonitor as Core, GpuHealthReport};
use crate::policy::thresholds::{
    GpuHealthPolicy, ALLOCATOR_REPORT_MAX_AGE_MS, EXPECTED_GPUS, MEMORY_FRAGMENTATION, REPORT_ALLOCATED, REPORT_DEVICE,
    REPORT_PID, REPORT_RESERVED, TEMPERATURE, XID_WINDOW_MS,
};
use crate::sampling::nvml_session::{resolve_nvml_library, shared_session};

#[napi(object)]
pub struct GpuThresholds {
    /// °C at or above which a device fails (`TEMPERATURE_HIGH`).
    pub temperature: f64,
    /// Allocator fragmentation at or above which a device fails (`FRAGMENTATION_HIGH`).
    #[napi(js_name = "memory_fragmentation")]
    pub memory_fragmentation: f64,
}

/// GPU thresholds to change; those left out keep their values.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct GpuThresholdsInput {
    pub temperature: Option<f64>,
    #[napi(js_name = "memory_fragmentation")]
    pub memory_fragmentation: Option<f64>,
}

js_fields!(GpuThresholdsInput {
    temperature = "temperature" check TEMPERATURE,
    memory_fragmentation = "memory_fragmentation" check MEMORY_FRAGMENTATION,
});

impl GpuThresholdsInput {
    /// These over `base`: keys given replace, keys left out keep `base`.
    fn over(self, base: GpuHealthPolicy) -> GpuHealthPolicy {
        GpuHealthPolicy {
            temperature: self.temperature.unwrap_or(base.temperature),
            memory_fragmentation: self.memory_fragmentation.unwrap_or(base.memory_fragmentation),
            ..base
        }
    }
}

/// Options of `new GPUHealthMonitor(options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct GpuHealthMonitorOptions {
    pub thresholds: Option<GpuThresholdsInput>,
    /// Fewer visible GPUs than this is `GPU_MISSING`; `null` (default) expects nothing.
    #[napi(ts_type = "number | null")]
    pub expected_gpus: Option<Nullable>,
    /// How long an Xid event counts in the verdict (default one hour).
    pub xid_window_ms: Option<f64>,
    /// How long an allocator report counts (default five minutes).
    pub allocator_report_max_age_ms: Option<f64>,
    /// Watch for Xid events in the background (default true).
    pub watch_xid: Option<bool>,
    pub nvml_library_path: Option<String>,
}

js_fields!(GpuHealthMonitorOptions {
    thresholds = "thresholds",
    expected_gpus = "expectedGpus" check EXPECTED_GPUS,
    xid_window_ms = "xidWindowMs" check XID_WINDOW_MS,
    allocator_report_max_age_ms = "allocatorReportMaxAgeMs" check ALLOCATOR_REPORT_MAX_AGE_MS,
    watch_xid = "watchXid",
    nvml_library_path = "nvmlLibraryPath",
});

/// A report from the CUDA worker's caching allocator.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct AllocatorStats {
    pub device: f64,
    /// Bytes in use by tensors, e.g. `torch.cuda.memory_allocated(device)`.
    pub allocated: f64,
    /// Bytes the allocator holds, e.g. `torch.cuda.memory_reserved(device)`.
    pub reserved: f64,
    /// The reporting process; reports of different processes on one device add up.
    pub pid: Option<f64>,
}

js_fields!(AllocatorStats {
    device = "device" check REPORT_DEVICE,
    allocated = "allocated" check REPORT_ALLOCATED,
    reserved = "reserved" check REPORT_RESERVED,
    pid = "pid" check REPORT_PID,
});

/// GPU health in one call: temperatures, throttling, ECC, retired pages and row remapping,
/// lost and missing devices, allocator fragmentation and critical Xid events.
#[napi(js_name = "GPUHealthMonitor")]
pub struct GpuHealthMonitor {
    pub(crate) core: Arc<Core>,
}

impl super::input::Attachable for GpuHealthMonitor {
    const JS_NAME: &'static str = "GPUHealthMonitor";
    type Core = Arc<Core>;
    fn core(&self) -> Self::Core {
        self.core.clone()
    }
}

#[napi]
impl GpuHealthMonitor {
    #[napi(constructor, ts_args_type = "options?: GpuHealthMonitorOptions")]
    pub fn new(env: Env, this: This<Unknown>, options: Option<Unknown>) -> Result<Self> {
        super::task::guarded(&env, "GPUHealthMonitor.constructor", || {
            super::receiver::require_new::<Self>(&env, &this, "GPUHealthMonitor")?;
            let options = GpuHealthMonitorOptions::read(&env, options, "options")?;
            let mut policy = GpuHealthPolicy::default();
            let mut library = None;
            let mut watch_xid = true;
            if let Some(options) = options {
                if let Some(given) = options.thresholds {
                    policy = given.over(policy);
                }
                if let Some(Nullable(expected)) = options.expected_gpus {
                    policy.expected_gpus = Some(expected as u32);
                }
                if let Some(window) = options.xid_window_ms {
                    policy.xid_window_ms = window;
                }
                if let Some(age) = options.allocator_report_max_age_ms {
                    policy.allocator_report_max_age_ms = age;
                }
                watch_xid = options.watch_xid.unwrap_or(true);
                library = options.nvml_library_path;
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
            let given = GpuThresholdsInput::required(&env, Some(value), "thresholds")?;
            let policy = given.over(self.core.policy());
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
            let stats = AllocatorStats::required(&env, Some(stats), "stats")?;
            let report = AllocatorReport {
                device: stats.device as u32,
                allocated: stats.allocated as u64,
                reserved: stats.reserved as u64,
                pid: stats.pid.unwrap_or(0.0) as u32,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::thresholds::GPU_THRESHOLDS;

    #[test]
    fn the_threshold_keys_are_the_specs_keys() {
        assert_eq!(GpuThresholdsInput::KEYS, GPU_THRESHOLDS.map(|spec| spec.key()));
    }
}
