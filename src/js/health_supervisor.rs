//! `HealthSupervisor`: the integration point that makes the rest run by itself.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue};
use napi::{Env, JsValue, Unknown, ValueType};
use napi_derive::napi;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::args::{alternatives, choice, describe, range_error, type_error, OptionsObject};
use super::checkpoint_manager::CheckpointManager;
use super::gpu_health_monitor::GpuHealthMonitor;
use super::gpu_recovery::GpuRecovery;
use super::incident_log::IncidentLog;
use super::input::{js_fields, Field, Fields, Instance, Nullable, OrOff};
use super::json::{JsonOut, JsonShape};
use super::memory_monitor::MemoryMonitor;
use super::memory_recovery::MemoryRecovery;
use crate::incident::IncidentSink;
use crate::policy::issues::{Action, HealthIssue as CoreIssue, IssueCode, Severity};
use crate::policy::thresholds::{
    BUDGET_MAX, BUDGET_WINDOW_MS, CHECKPOINT_INTERVAL_MS, CHECK_TIMEOUT_MS, FAST_SAMPLE_MS, FORECAST_HORIZON_MS,
    HEALTHY_AFTER, HISTORY_STEP_MS, INTERVAL_MS, STALE_AFTER_MS, UNHEALTHY_AFTER,
};
use crate::recovery::engine::Hook;
use crate::shapes::HEALTH_ISSUE_KEYS;
use crate::supervisor::{
    action_json, CheckType, EventSink, RecoveryType, Supervisor, SupervisorOptions, SupervisorParts, SystemHealth,
};

pub const EVENTS: &[&str] = &["health", "unhealthy", "warning", "recovery", "incident", "error"];

/// Options of `new HealthSupervisor(options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct HealthSupervisorOptions {
    #[napi(ts_type = "MemoryMonitor")]
    pub memory_monitor: Option<Instance<MemoryMonitor>>,
    #[napi(ts_type = "GPUHealthMonitor")]
    pub gpu_monitor: Option<Instance<GpuHealthMonitor>>,
    #[napi(ts_type = "MemoryRecovery")]
    pub memory_recovery: Option<Instance<MemoryRecovery>>,
    #[napi(ts_type = "GPURecovery")]
    pub gpu_recovery: Option<Instance<GpuRecovery>>,
    /// Takes the periodic checkpoints (`checkpointIntervalMs`).
    #[napi(ts_type = "CheckpointManager")]
    pub checkpoint_manager: Option<Instance<CheckpointManager>>,
    /// Where the supervisor records its incidents.
    #[napi(ts_type = "IncidentLog")]
    pub incident_log: Option<Instance<IncidentLog>>,
    /// Check every this many milliseconds (default 60000).
    pub interval_ms: Option<f64>,
    /// Recover automatically when unhealthy (default true).
    pub auto_recover: Option<bool>,
    /// At most `max` automatic recoveries per `windowMs` (default 3 per 600000).
    pub recovery_budget: Option<RecoveryBudgetInput>,
    /// Take a checkpoint this often (needs `checkpointManager`); `null` (default) for never.
    #[napi(ts_type = "number | null")]
    pub checkpoint_interval_ms: Option<Nullable>,
    /// What restarting the application means for this service (Xids that call for it).
    #[napi(ts_type = "() => unknown")]
    pub restart_process: Option<Arc<dyn Hook>>,
    /// Consecutive checks that start and end an episode (default 2 and 2).
    pub hysteresis: Option<HysteresisInput>,
    /// Longest one check may take before the state is `'unknown'` and the service not ready
    /// (default 10000: far beyond a slow driver, well inside a 30 s probe window).
    pub check_timeout_ms: Option<f64>,
    /// Not ready when the last successful check is older than this; greater than `intervalMs`
    /// (default `2 × intervalMs + checkTimeoutMs`).
    pub stale_after_ms: Option<f64>,
    /// Take a fast sample (GPU and host/cgroup memory only) this often between the full
    /// checks: an integer from 50 to `intervalMs`. Default 1000 (or `intervalMs` when that is
    /// shorter); `null` turns fast sampling, and with it the crossings and forecasts between
    /// the checks, off. Needs a `memoryMonitor`.
    #[napi(ts_type = "number | null")]
    pub fast_sample_ms: Option<OrOff>,
    /// Raise `MEMORY_EXHAUSTION_FORECAST` when the fast samples' trend projects memory full
    /// within this many milliseconds (default 60000; 10000 to 86400000).
    pub forecast_horizon_ms: Option<f64>,
    /// Hold intake while an exhaustion forecast stands (default true).
    pub preemptive_pause: Option<bool>,
    /// Record a metrics history of every full check in this directory (created, mode 0700;
    /// locked while the supervisor lives): read it with `readHistory`. Off by default.
    pub history_dir: Option<String>,
    /// The history's finest step: one record per GPU and for the host per step however
    /// often checks run (default 10000, or `intervalMs` where that is longer; 100 to 3600000,
    /// and at least `intervalMs`). Kept for 8640 steps, then in buckets of 30 steps for 2016
    /// more (24 h and 7 days at the default).
    pub history_step_ms: Option<f64>,
}

js_fields!(HealthSupervisorOptions {
    memory_monitor = "memoryMonitor",
    gpu_monitor = "gpuMonitor",
    memory_recovery = "memoryRecovery",
    gpu_recovery = "gpuRecovery",
    checkpoint_manager = "checkpointManager",
    incident_log = "incidentLog",
    interval_ms = "intervalMs" check INTERVAL_MS,
    auto_recover = "autoRecover",
    recovery_budget = "recoveryBudget",
    checkpoint_interval_ms = "checkpointIntervalMs" check CHECKPOINT_INTERVAL_MS,
    restart_process = "restartProcess",
    hysteresis = "hysteresis",
    check_timeout_ms = "checkTimeoutMs" check CHECK_TIMEOUT_MS,
    stale_after_ms = "staleAfterMs" check STALE_AFTER_MS,
    fast_sample_ms = "fastSampleMs" check FAST_SAMPLE_MS,
    forecast_horizon_ms = "forecastHorizonMs" check FORECAST_HORIZON_MS,
    preemptive_pause = "preemptivePause",
    history_dir = "historyDir",
    history_step_ms = "historyStepMs" check HISTORY_STEP_MS,
});

/// `recoveryBudget`: at most `max` automatic recoveries per `windowMs`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct RecoveryBudgetInput {
    pub max: Option<f64>,
    pub window_ms: Option<f64>,
}

js_fields!(RecoveryBudgetInput { max = "max" check BUDGET_MAX, window_ms = "windowMs" check BUDGET_WINDOW_MS });

/// `hysteresis`: consecutive checks that start and end an episode.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct HysteresisInput {
    pub unhealthy_after: Option<f64>,
    pub healthy_after: Option<f64>,
}

js_fields!(HysteresisInput {
    unhealthy_after = "unhealthyAfter" check UNHEALTHY_AFTER,
    healthy_after = "healthyAfter" check HEALTHY_AFTER,
});

type Listener = ThreadsafeFunction<JsonOut, UnknownReturnValue, JsonOut, Status, false, true>;

/// Listeners by event, called on the JS thread; a listener that throws is reported on
/// stderr and never stops the supervisor.
#[derive(Default)]
struct Listeners {
    next_id: AtomicU64,
    by_event: Mutex<Vec<(String, u64, Arc<Listener>)>>,
}

impl EventSink for Listeners {
    fn emit(&self, event: &'static str, payload: serde_json::Value) {
        let targets: Vec<Arc<Listener>> = {
            let listeners = crate::sync::lock(&self.by_event);
            listeners.iter().filter(|(e, _, _)| e == event).map(|(_, _, l)| l.clone()).collect()
        };
        for listener in targets {
            listener.call_with_return_value(
                JsonOut(payload.clone()),
                ThreadsafeFunctionCallMode::NonBlocking,
                move |result, _env| {
                    if let Err(error) = result {
                        eprintln!("hpc-health: a '{event}' listener threw: {}", error.reason);
                    }
                    Ok(())
                },
            );
        }
    }
}

/// Runs the requirements' health-check loop off the JS thread, recovers within a budget,
/// and answers operators (status, metrics, JSON-RPC).
#[napi]
pub struct HealthSupervisor {
    pub(crate) core: Arc<Supervisor>,
    listeners: Arc<Listeners>,
    /// The JS functions behind each listener id, for `off` (kept on the JS thread).
    listener_refs: Vec<(String, u64, FunctionRef<JsonOut, UnknownReturnValue>)>,
}

#[napi]
impl HealthSupervisor {
    #[napi(constructor, ts_args_type = "options?: HealthSupervisorOptions")]
    pub fn new(env: Env, this: This<Unknown>, options: Option<Unknown>) -> Result<Self> {
        super::task::guarded(&env, "HealthSupervisor.constructor", || {
            super::receiver::require_new::<Self>(&env, &this, "HealthSupervisor")?;
            let options = HealthSupervisorOptions::read(&env, options, "options")?;
            let mut parts = SupervisorParts::default();
            let mut settings = SupervisorOptions::default();
            // Given or not; the defaults of these follow the interval and check timeout read.
            let mut stale_after = None;
            // `undefined`: the default; `null`: off.
            let mut fast_sample_ms = Some(None);
            if let Some(o) = options {
                parts.memory_monitor = o.memory_monitor.map(|Instance(m)| m);
                parts.gpu_monitor = o.gpu_monitor.map(|Instance(m)| m);
                parts.memory_recovery = o.memory_recovery.map(|Instance(m)| m);
                parts.gpu_recovery = o.gpu_recovery.map(|Instance(m)| m);
                parts.incidents = o.incident_log.map(|Instance(log)| log as Arc<dyn IncidentSink>);
                parts.checkpointer = o.checkpoint_manager.map(|Instance(m)| super::durable::periodic_checkpoints(m));
                parts.restart_process = o.restart_process;
                if let Some(ms) = o.interval_ms {
                    settings.interval = Duration::from_millis(ms as u64);
                }
                if let Some(ms) = o.check_timeout_ms {
                    settings.check_timeout = Duration::from_millis(ms as u64);
                }
                if let Some(ms) = o.stale_after_ms {
                    if ms <= settings.interval.as_millis() as f64 {
                        return Err(range_error(
                            &env,
                            format!(
                                "staleAfterMs must be greater than intervalMs ({}), got {ms}",
                                settings.interval.as_millis()
                            ),
                        ));
                    }
                    stale_after = Some(Duration::from_millis(ms as u64));
                }
                settings.auto_recover = o.auto_recover.unwrap_or(true);
                if let Some(OrOff(ms)) = o.fast_sample_ms {
                    if let Some(ms) = ms.filter(|&ms| ms > settings.interval.as_millis() as f64) {
                        return Err(range_error(
                            &env,
                            format!(
                                "fastSampleMs must be at most intervalMs ({}), got {ms}",
                                settings.interval.as_millis()
                            ),
                        ));
                    }
                    fast_sample_ms = ms.map(Some);
                }
                if let Some(ms) = o.forecast_horizon_ms {
                    settings.forecast_horizon_ms = ms;
                }
                settings.preemptive_pause = o.preemptive_pause.unwrap_or(true);
                if let Some(budget) = o.recovery_budget {
                    settings.budget_max = budget.max.map_or(settings.budget_max, |max| max as u32);
                    settings.budget_window_ms = budget.window_ms.unwrap_or(settings.budget_window_ms);
                }
                if let Some(h) = o.hysteresis {
                    settings.unhealthy_after = h.unhealthy_after.map_or(settings.unhealthy_after, |n| n as u32);
                    settings.healthy_after = h.healthy_after.map_or(settings.healthy_after, |n| n as u32);
                }
                if let Some(dir) = o.history_dir {
                    let interval_ms = settings.interval.as_millis() as u64;
                    let step = match o.history_step_ms {
                        Some(ms) if (ms as u64) < interval_ms => {
                            let message = format!(
                                "historyStepMs ({ms}) must be at least intervalMs ({interval_ms}): a step no check falls in is a gap in the history"
                            );
                            return Err(super::args::range_error(&env, message));
                        }
                        Some(ms) => ms as u64,
                        None => crate::history::policy::default_step_ms(interval_ms),
                    };
                    let policy = crate::history::HistoryPolicy::with_step(step);
                    let recording = crate::history::Recording::open(std::path::Path::new(&dir), policy)
                        .map_err(|e| super::task::coded_error(&env, e.code, &e.message))?;
                    parts.history = Some(Arc::new(recording));
                } else if o.history_step_ms.is_some() {
                    return Err(type_error(
                        &env,
                        "ERR_INVALID_ARG_VALUE",
                        "historyStepMs needs a historyDir to record into".to_owned(),
                    ));
                }
                if let Some(Nullable(ms)) = o.checkpoint_interval_ms {
                    if parts.checkpointer.is_none() {
                        return Err(type_error(
                            &env,
                            "ERR_INVALID_ARG_VALUE",
                            "checkpointIntervalMs needs a checkpointManager to take the checkpoints".to_owned(),
                        ));
                    }
                    settings.checkpoint_interval = Some(Duration::from_millis(ms as u64));
                }
            }
            settings.fast_sample = fast_sample_ms.map(|ms| {
                ms.map_or_else(
                    || SupervisorOptions::default_fast_sample(settings.interval),
                    |ms| Duration::from_millis(ms as u64),
                )
            });
            settings.stale_after = stale_after
                .unwrap_or_else(|| SupervisorOptions::default_stale_after(settings.interval, settings.check_timeout));
            let listeners = Arc::new(Listeners::default());
            let core = Supervisor::new(parts, settings, listeners.clone());
            Ok(HealthSupervisor { core: Arc::new(core), listeners, listener_refs: Vec::new() })
        })
    }

    /// Starts the loop (idempotent). It never keeps the process alive.
    #[napi]
    pub fn start(&self, env: Env) -> Result<()> {
        super::task::guarded(&env, "HealthSupervisor.start", || {
            self.core
                .start(napi::bindgen_prelude::spawn)
                .map_err(|e| super::task::coded_error(&env, e.code, &e.message))
        })
    }

    /// Stops the loop; resolves once no more events will come from it. Idempotent. A health
    /// check under way is abandoned, and a recovery under way (the loop's or `recoverSystem`'s)
    /// is interrupted: it stops waiting (for a hook, for a lost device) and is recorded with
    /// result `'interrupted'`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        super::task::guarded(env, "HealthSupervisor.stop", || {
            let core = self.core.clone();
            env.spawn_future(async move {
                core.stop().await;
                Ok(())
            })
        })
    }

    /// `'quick'` (default): memory pressure and GPU temperatures; `'full'`: every signal.
    #[napi(ts_args_type = "checkType?: 'quick' | 'full'", ts_return_type = "Promise<SystemHealthReport>")]
    pub fn check_system_health<'env>(
        &self,
        env: &'env Env,
        check_type: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, JsonShape>> {
        super::task::guarded(env, "HealthSupervisor.checkSystemHealth", || {
            let check_type = read_check_type(env, check_type)?;
            let core = self.core.clone();
            env.spawn_future_with_callback(
                async move {
                    let health = core.check_system_health(check_type).await;
                    if let Ok(h) = &health {
                        core.remember(h);
                    }
                    Ok(health)
                },
                |env, health| {
                    health
                        .map(|h| JsonShape::of(&h))
                        .map_err(|e| super::task::coded_error(env, "ERR_CHECK_FAILED", &e.message))
                },
            )
        })
    }

    /// Maps each failing issue of `health` (from `checkSystemHealth`) to its recovery and
    /// runs them; resolves the actions taken.
    #[napi(ts_args_type = "health: { issues: HealthIssue[] }", ts_return_type = "Promise<RecoveryAction[]>")]
    pub fn trigger_recovery<'env>(&self, env: &'env Env, health: Unknown) -> Result<PromiseRaw<'env, JsonOut>> {
        super::task::guarded(env, "HealthSupervisor.triggerRecovery", || {
            let issues = read_issues(env, health)?;
            let core = self.core.clone();
            env.spawn_future(async move {
                let health = SystemHealth {
                    healthy: !issues.iter().any(|i| i.severity == Severity::Fail),
                    check_type: CheckType::Full,
                    timestamp_ms: crate::sampling::unix_time_ms(),
                    duration_ms: 0.0,
                    memory: None,
                    gpu: None,
                    issues,
                    accepting_requests: core.accepting_requests(),
                };
                let actions = core.trigger_recovery(&health).await;
                Ok(JsonOut(serde_json::Value::Array(actions.iter().map(action_json).collect())))
            })
        })
    }

    /// An operator's request, outside the budget: `'memory'`, `'gpu'` or `'process'`.
    #[napi(ts_args_type = "errorType: 'memory' | 'gpu' | 'process'", ts_return_type = "Promise<RecoveryAction>")]
    pub fn recover_system<'env>(&self, env: &'env Env, error_type: Unknown) -> Result<PromiseRaw<'env, JsonOut>> {
        super::task::guarded(env, "HealthSupervisor.recoverSystem", || {
            let kind = read_recovery_type(env, error_type)?;
            let core = self.core.clone();
            env.spawn_future(async move { Ok(JsonOut(action_json(&core.recover_system(kind).await))) })
        })
    }

    /// Listens to `'health' | 'unhealthy' | 'warning' | 'recovery' | 'incident' | 'error'`.
    #[napi(
        ts_args_type = "event: 'health' | 'unhealthy' | 'warning' | 'recovery' | 'incident' | 'error', listener: (payload: any) => void"
    )]
    pub fn on(&mut self, env: Env, event: Unknown, listener: Unknown) -> Result<()> {
        super::task::guarded(&env, "HealthSupervisor.on", || {
            let event = read_event(&env, event)?;
            if listener.get_type()? != ValueType::Function {
                return Err(type_error(
                    &env,
                    "ERR_INVALID_ARG_TYPE",
                    format!("listener must be a function, got {}", describe(&listener)),
                ));
            }
            // SAFETY: the value was checked just above to be a function.
            let function: Function<'_, JsonOut, UnknownReturnValue> = unsafe { listener.cast()? };
            let threadsafe =
                function.build_threadsafe_function::<JsonOut>().weak::<true>().callee_handled::<false>().build()?;
            let id = self.listeners.next_id.fetch_add(1, Ordering::Relaxed);
            crate::sync::lock(&self.listeners.by_event).push((event.clone(), id, Arc::new(threadsafe)));
            self.listener_refs.push((event, id, function.create_ref()?));
            Ok(())
        })
    }

    /// Removes a listener added with `on` (the first match).
    #[napi(
        ts_args_type = "event: 'health' | 'unhealthy' | 'warning' | 'recovery' | 'incident' | 'error', listener: (payload: any) => void"
    )]
    pub fn off(&mut self, env: Env, event: Unknown, listener: Unknown) -> Result<()> {
        super::task::guarded(&env, "HealthSupervisor.off", || {
            let event = read_event(&env, event)?;
            let mut found = None;
            for (position, (e, id, reference)) in self.listener_refs.iter().enumerate() {
                if *e == event && env.strict_equals(reference.borrow_back(&env)?, listener)? {
                    found = Some((position, *id));
                    break;
                }
            }
            if let Some((position, id)) = found {
                self.listener_refs.remove(position);
                crate::sync::lock(&self.listeners.by_event).retain(|(_, i, _)| *i != id);
            }
            Ok(())
        })
    }

    /// Where the supervisor stands: state, intake, budget, operator actions, last check.
    #[napi(ts_return_type = "SupervisorStatus")]
    pub fn status(&self, env: Env) -> Result<JsonOut> {
        super::task::guarded(&env, "HealthSupervisor.status", || Ok(JsonOut(self.core.status())))
    }

    /// Prometheus text exposition (format 0.0.4).
    #[napi]
    pub fn metrics(&self, env: Env) -> Result<String> {
        super::task::guarded(&env, "HealthSupervisor.metrics", || Ok(self.core.metrics_text()))
    }
}

fn read_check_type(env: &Env, value: Option<Unknown>) -> Result<CheckType> {
    let Some(value) = value.filter(|v| !matches!(v.get_type(), Ok(ValueType::Undefined))) else {
        return Ok(CheckType::Quick);
    };
    let expected = alternatives(&CheckType::ALL.map(CheckType::as_str));
    choice(env, &value, "checkType", &expected, &CheckType::ALL, CheckType::as_str)
}

fn read_recovery_type(env: &Env, value: Unknown) -> Result<RecoveryType> {
    let expected = alternatives(&RecoveryType::ALL.map(RecoveryType::as_str));
    choice(env, &value, "errorType", &expected, &RecoveryType::ALL, RecoveryType::as_str)
}

fn read_event(env: &Env, value: Unknown) -> Result<String> {
    let expected = format!("one of {}", EVENTS.iter().map(|e| format!("'{e}'")).collect::<Vec<_>>().join(", "));
    choice(env, &value, "event", &expected, EVENTS, |e| e).map(str::to_owned)
}

/// A health issue read back as `checkSystemHealth` wrote it (`crate::shapes`): the one
/// `HealthIssue` type, by the same keys.
impl<'env> Fields<'env> for CoreIssue {
    const KEYS: &'static [&'static str] = &HEALTH_ISSUE_KEYS;

    fn read_fields(fields: &OptionsObject<'env>) -> Result<Self> {
        let [code, severity, device, message, action, eta_ms] = HEALTH_ISSUE_KEYS;
        let (env, name) = (fields.env(), |key| fields.field_name(key));
        let code_text = String::read(fields, code)?;
        let code = IssueCode::parse(&code_text).ok_or_else(|| {
            range_error(env, format!("{} is not a known issue code, got {code_text:?}", name("code")))
        })?;
        let severity_text = String::read(fields, severity)?;
        let severity = Severity::parse(&severity_text).ok_or_else(|| {
            range_error(env, format!("{} must be 'warn' or 'fail', got {severity_text:?}", name("severity")))
        })?;
        let action_text = String::read(fields, action)?;
        let action = Action::parse(&action_text).ok_or_else(|| {
            range_error(env, format!("{} is not a known action, got {action_text:?}", name("action")))
        })?;
        let device = fields.optional_number(device)?.map(|d| d as u32);
        let message = fields.string(message)?.unwrap_or_default();
        let eta_ms = fields.optional_number(eta_ms)?.filter(|ms| ms.is_finite() && *ms >= 0.0).map(|ms| ms as u64);
        Ok(CoreIssue { code, severity, device, message, action, eta_ms })
    }
}

/// Reads `health.issues` as `checkSystemHealth` wrote them.
fn read_issues(env: &Env, health: Unknown) -> Result<Vec<CoreIssue>> {
    if health.get_type()? != ValueType::Object {
        return Err(type_error(
            env,
            "ERR_INVALID_ARG_TYPE",
            format!("health must be an object, got {}", describe(&health)),
        ));
    }
    // SAFETY: the value was checked just above to be an object.
    let object: Object = unsafe { health.cast()? };
    let issues: Unknown = object.get_named_property("issues")?;
    if !issues.is_array()? {
        return Err(type_error(
            env,
            "ERR_INVALID_ARG_TYPE",
            format!("health.issues must be an array, got {}", describe(&issues)),
        ));
    }
    // SAFETY: the value was checked just above to be an array, which is an object.
    let issues: Object = unsafe { issues.cast()? };
    let mut read = Vec::new();
    for i in 0..issues.get_array_length()? {
        let item: Unknown = issues.get_element(i)?;
        read.push(CoreIssue::required(env, Some(item), &format!("health.issues[{i}]"))?);
    }
    Ok(read)
}
