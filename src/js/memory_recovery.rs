//! `MemoryRecovery`: the requirements' recovery from memory pressure.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown};
use napi_derive::napi;
use std::sync::Arc;
use std::time::Duration;

use super::hooks::read_instance;
use super::incident_log::IncidentLog;
use super::input::{js_fields, Fields, Instance};
use super::json::JsonOut;
use super::memory_monitor::MemoryMonitor;
use super::recovery_outcome::{outcome_value, settle};
use crate::incident::IncidentSink;
use crate::policy::thresholds::STEP_TIMEOUT_MS;
use crate::recovery::engine::Hook;
use crate::recovery::memory::{MemoryHooks, MemoryRecovery as Core};

/// Hooks and options of `new MemoryRecovery(monitor, options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct MemoryRecoveryOptions {
    /// Clears the GPU cache, e.g. asks the worker for `torch.cuda.empty_cache()`.
    #[napi(js_name = "clearGPUCache", ts_type = "() => unknown")]
    pub clear_gpu_cache: Option<Arc<dyn Hook>>,
    #[napi(ts_type = "() => unknown")]
    pub defragment_memory: Option<Arc<dyn Hook>>,
    /// Runs when a step throws or times out, with that error.
    #[napi(ts_type = "(error: Error & { code: string, step: string }) => unknown")]
    pub emergency_cleanup: Option<Arc<dyn Hook>>,
    /// Longest a step may take (default 30000).
    pub step_timeout_ms: Option<f64>,
    /// Where `recovery_started` (before the first step acts) and `recovery_finished` go.
    #[napi(ts_type = "IncidentLog")]
    pub incident_log: Option<Instance<IncidentLog>>,
}

js_fields!(MemoryRecoveryOptions {
    clear_gpu_cache = "clearGPUCache",
    defragment_memory = "defragmentMemory",
    emergency_cleanup = "emergencyCleanup",
    step_timeout_ms = "stepTimeoutMs" check STEP_TIMEOUT_MS,
    incident_log = "incidentLog",
});

/// Recovers from memory pressure: stop intake, clear the GPU cache, defragment, return
/// freed native heap, verify. One run at a time; concurrent calls join it.
#[napi]
pub struct MemoryRecovery {
    pub(crate) core: Arc<Core>,
}

impl super::input::Attachable for MemoryRecovery {
    const JS_NAME: &'static str = "MemoryRecovery";
    type Core = Arc<Core>;
    fn core(&self) -> Self::Core {
        self.core.clone()
    }
}

#[napi]
impl MemoryRecovery {
    #[napi(constructor, ts_args_type = "monitor: MemoryMonitor, options?: MemoryRecoveryOptions")]
    pub fn new(env: Env, this: This<Unknown>, monitor: Option<Unknown>, options: Option<Unknown>) -> Result<Self> {
        super::task::guarded(&env, "MemoryRecovery.constructor", || {
            super::receiver::require_new::<Self>(&env, &this, "MemoryRecovery")?;
            let monitor = read_instance(&env, monitor, "monitor", "MemoryMonitor", |m: &MemoryMonitor| m.core.clone())?;
            let mut hooks = MemoryHooks::default();
            let mut step_timeout = STEP_TIMEOUT_MS.default;
            let mut incidents = None;
            if let Some(options) = MemoryRecoveryOptions::read(&env, options, "options")? {
                incidents = options.incident_log.map(|Instance(log)| log as Arc<dyn IncidentSink>);
                hooks.clear_gpu_cache = options.clear_gpu_cache;
                hooks.defragment_memory = options.defragment_memory;
                hooks.emergency_cleanup = options.emergency_cleanup;
                step_timeout = options.step_timeout_ms.unwrap_or(step_timeout);
            }
            let core = Core::new(monitor, hooks, Duration::from_millis(step_timeout as u64));
            core.core().set_incident_sink(incidents);
            Ok(MemoryRecovery { core: Arc::new(core) })
        })
    }

    /// True while intake is stopped: the service's request handler should refuse new work.
    #[napi(getter, js_name = "pause_incoming")]
    pub fn pause_incoming(&self, env: Env) -> Result<bool> {
        super::task::guarded(&env, "MemoryRecovery.pause_incoming", || Ok(self.core.pause_incoming()))
    }

    /// Runs the flow. Resolves `true` when pressure is gone (intake resumes), `false` when it
    /// remains (intake stays paused); rejects with the step's error when a step throws or
    /// times out (`code` `ERR_STEP_FAILED` or `ERR_STEP_TIMEOUT`), after `emergencyCleanup`.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn recover_from_pressure<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
        super::task::guarded(env, "MemoryRecovery.recoverFromPressure", || {
            let core = self.core.clone();
            env.spawn_future_with_callback(async move { Ok(core.recover_from_pressure().await) }, settle)
        })
    }

    /// An operator's override: reopens intake.
    #[napi]
    pub fn resume(&self, env: Env) -> Result<()> {
        super::task::guarded(&env, "MemoryRecovery.resume", || {
            self.core.resume();
            Ok(())
        })
    }

    /// The record of the last run, or `null` before the first.
    #[napi(getter, ts_return_type = "RecoveryOutcome | null")]
    pub fn last_outcome(&self, env: Env) -> Result<JsonOut> {
        super::task::guarded(&env, "MemoryRecovery.lastOutcome", || {
            Ok(JsonOut(outcome_value(self.core.core().last_outcome())))
        })
    }
}
