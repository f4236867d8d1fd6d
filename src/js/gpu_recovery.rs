//! `GPURecovery`: out-of-memory and lost-device handling.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown};
use napi_derive::napi;
use std::sync::Arc;
use std::time::Duration;

use super::args::js_string;
use super::gpu_health_monitor::GpuHealthMonitor;
use super::hooks::read_instance;
use super::incident_log::IncidentLog;
use super::input::{js_fields, Fields, Instance};
use super::json::JsonOut;
use super::recovery_outcome::{outcome_value, settle};
use crate::incident::IncidentSink;
use crate::policy::thresholds::{DEVICE_WAIT_MS, RECOVERY_MEMORY_THRESHOLD, STEP_TIMEOUT_MS};
use crate::recovery::engine::Hook;
use crate::recovery::gpu::{GpuHooks, GpuRecovery as Core};

/// Hooks and options of `new GPURecovery(gpu, options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct GpuRecoveryOptions {
    /// e.g. ask the worker for `torch.cuda.empty_cache()`.
    #[napi(ts_type = "() => unknown")]
    pub empty_cache: Option<Arc<dyn Hook>>,
    /// e.g. `torch.cuda.reset_peak_memory_stats()`.
    #[napi(ts_type = "() => unknown")]
    pub reset_peak_memory_stats: Option<Arc<dyn Hook>>,
    /// Re-creates the worker's CUDA context after a lost device came back (e.g. restart it).
    #[napi(ts_type = "() => unknown")]
    pub reinitialize: Option<Arc<dyn Hook>>,
    /// Longest a step may take (default 30000).
    pub step_timeout_ms: Option<f64>,
    /// Longest `reinitializeGpu` waits for every known device (default 30000).
    pub device_wait_ms: Option<f64>,
    /// A device's memory use must be below this after `recoverFromOom` (default 0.85).
    pub memory_threshold: Option<f64>,
    /// Where `recovery_started` (before the first step acts) and `recovery_finished` go.
    #[napi(ts_type = "IncidentLog")]
    pub incident_log: Option<Instance<IncidentLog>>,
}

js_fields!(GpuRecoveryOptions {
    empty_cache = "emptyCache",
    reset_peak_memory_stats = "resetPeakMemoryStats",
    reinitialize = "reinitialize",
    step_timeout_ms = "stepTimeoutMs" check STEP_TIMEOUT_MS,
    device_wait_ms = "deviceWaitMs" check DEVICE_WAIT_MS,
    memory_threshold = "memoryThreshold" check RECOVERY_MEMORY_THRESHOLD,
    incident_log = "incidentLog",
});

/// Recovers the GPU side: `handleGpuError('out_of_memory' | 'device_lost')`.
#[napi(js_name = "GPURecovery")]
pub struct GpuRecovery {
    pub(crate) core: Arc<Core>,
}

impl super::input::Attachable for GpuRecovery {
    const JS_NAME: &'static str = "GPURecovery";
    type Core = Arc<Core>;
    fn core(&self) -> Self::Core {
        self.core.clone()
    }
}

#[napi]
impl GpuRecovery {
    #[napi(constructor, ts_args_type = "gpu: GPUHealthMonitor, options?: GpuRecoveryOptions")]
    pub fn new(env: Env, this: This<Unknown>, gpu: Option<Unknown>, options: Option<Unknown>) -> Result<Self> {
        super::task::guarded(&env, "GPURecovery.constructor", || {
            super::receiver::require_new::<Self>(&env, &this, "GPURecovery")?;
            let gpu = read_instance(&env, gpu, "gpu", "GPUHealthMonitor", |g: &GpuHealthMonitor| g.core.clone())?;
            let mut hooks = GpuHooks::default();
            let (mut step_timeout, mut device_wait, mut threshold) =
                (STEP_TIMEOUT_MS.default, DEVICE_WAIT_MS.default, RECOVERY_MEMORY_THRESHOLD.default);
            let mut incidents = None;
            if let Some(options) = GpuRecoveryOptions::read(&env, options, "options")? {
                incidents = options.incident_log.map(|Instance(log)| log as Arc<dyn IncidentSink>);
                hooks.empty_cache = options.empty_cache;
                hooks.reset_peak_memory_stats = options.reset_peak_memory_stats;
                hooks.reinitialize = options.reinitialize;
                step_timeout = options.step_timeout_ms.unwrap_or(step_timeout);
                device_wait = options.device_wait_ms.unwrap_or(device_wait);
                threshold = options.memory_threshold.unwrap_or(threshold);
            }
            let core = Core::new(
                gpu,
                hooks,
                Duration::from_millis(step_timeout as u64),
                Duration::from_millis(device_wait as u64),
                threshold,
            );
            core.core().set_incident_sink(incidents);
            Ok(GpuRecovery { core: Arc::new(core) })
        })
    }

    /// `'out_of_memory'` runs `recoverFromOom`, `'device_lost'` runs `reinitializeGpu`; any
    /// other string resolves `false`.
    #[napi(ts_args_type = "errorType: 'out_of_memory' | 'device_lost' | string", ts_return_type = "Promise<boolean>")]
    pub fn handle_gpu_error<'env>(&self, env: &'env Env, error_type: Unknown) -> Result<PromiseRaw<'env, bool>> {
        super::task::guarded(env, "GPURecovery.handleGpuError", || {
            let kind = js_string(env, &error_type, "errorType")?;
            let core = self.core.clone();
            env.spawn_future_with_callback(async move { Ok(core.handle_gpu_error(&kind).await) }, |env, outcome| {
                match outcome {
                    Some(outcome) => settle(env, outcome),
                    None => Ok(false),
                }
            })
        })
    }

    /// `emptyCache`, `resetPeakMemoryStats`, then every device's memory below `memoryThreshold`.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn recover_from_oom<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
        super::task::guarded(env, "GPURecovery.recoverFromOom", || {
            let core = self.core.clone();
            env.spawn_future_with_callback(async move { Ok(core.recover_from_oom().await) }, settle)
        })
    }

    /// Re-opens NVML, waits up to `deviceWaitMs` for every known device (by UUID), runs
    /// `reinitialize`, verifies. `false` when a device does not come back.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn reinitialize_gpu<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
        super::task::guarded(env, "GPURecovery.reinitializeGpu", || {
            let core = self.core.clone();
            env.spawn_future_with_callback(async move { Ok(core.reinitialize_gpu().await) }, settle)
        })
    }

    /// Every device known before answers, none is lost, GPU health has no `fail` issue.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn verify_gpu_state<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
        super::task::guarded(env, "GPURecovery.verifyGpuState", || {
            let core = self.core.clone();
            env.spawn_future_with_callback(
                async move { Ok(tokio::task::spawn_blocking(move || core.verify_gpu_state().ok).await) },
                |env, verified| {
                    verified.map_err(|e| {
                        super::task::coded_error(env, "ERR_INTERNAL", &format!("internal error in hpc-health: {e}"))
                    })
                },
            )
        })
    }

    /// The record of the last run, or `null` before the first.
    #[napi(getter, ts_return_type = "RecoveryOutcome | null")]
    pub fn last_outcome(&self, env: Env) -> Result<JsonOut> {
        super::task::guarded(&env, "GPURecovery.lastOutcome", || {
            Ok(JsonOut(outcome_value(self.core.core().last_outcome())))
        })
    }
}
