//! The health supervisor: the requirements' `startHealthCheck` loop, run off the JS thread.
//! Checks never overlap (a slow check delays the next) and go on while a recovery runs;
//! event sources wake the loop between checks (`wake`); a monitoring failure is reported
//! without killing the loop, and a check that hangs makes the state `unknown` at once.
//! What to do about the issues is the planner's (`planner`), carrying it out is
//! `recoveries`', what the supervisor shows is `status`'s; this module runs the loop and the
//! checks and keeps the state between them.

pub mod detection;
pub mod episode;
pub mod metrics;
pub mod pauses;
pub mod planner;
mod recoveries;
pub mod status;

use crate::history::record::{HealthState, FLAG_INTAKE_CLOSED, FLAG_RECOVERY_PAUSE, FLAG_SUPERVISOR_PAUSE};
use crate::history::Recording;
use crate::incident::{Incident, IncidentKind, IncidentSeverity, IncidentSink};
use crate::monitors::gpu_health::GpuHealthMonitor;
use crate::monitors::memory::MemoryMonitor;
use crate::policy::crossing::CrossingChange;
use crate::policy::forecast::{ExhaustionForecast, ForecastPolicy, ForecastTransition};
use crate::policy::issues::{Action, HealthIssue, IssueCode, Severity};
use crate::policy::pressure::pressure_issues;
use crate::policy::thresholds::{
    stale_after_default_ms, MemoryThresholds, BUDGET_MAX, BUDGET_WINDOW_MS, CHECK_TIMEOUT_MS, FAILURES_FOR_UNKNOWN,
    FAST_SAMPLE_MS, FORECAST_HORIZON_MS, HEALTHY_AFTER, INTERVAL_MS, STEP_TIMEOUT_MS, UNHEALTHY_AFTER, WAKE_MIN_GAP_MS,
};
use crate::recovery::engine::{Hook, Interrupter};
use crate::recovery::gpu::GpuRecovery;
use crate::recovery::memory::MemoryRecovery;
use crate::sampling::fast::{take_fast_sample, FastSample};
use crate::sampling::gpu::GpuDetail;
use crate::sampling::pressure_events::{PressureWatcher, PsiTrigger};
use crate::sampling::{duration_ms, unix_time_ms};
use crate::sync::lock;
use crate::wake::{Wake, WakeHandle, WakeSource};
use detection::Detection;
use episode::{Backoff, EpisodeChange, Hysteresis, RecoveryBudget};
use planner::{ActionKind, ActionResult};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::sync::Notify;

pub use status::{action_json, health_summary, issue_json};

// The kinds of check and recovery operators ask for are the RPC layer's words.
pub use crate::vocabulary::{CheckType, RecoveryType};

pub use crate::health::SystemHealth;

/// While `stop` waits for the loop, how often it interrupts recoveries again.
const STOP_INTERRUPT_REPEAT: Duration = Duration::from_millis(50);

/// A health check that gave no answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckError {
    /// It ran out of `checkTimeoutMs` (a hung driver call): the state is `unknown` at once.
    pub timed_out: bool,
    pub message: String,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where the supervisor's events go (JavaScript listeners in the binding).
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &'static str, payload: Value);
}

pub type LoopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pub type CheckpointFuture = Pin<Box<dyn Future<Output = Result<Value, String>> + Send>>;

/// Takes a checkpoint (the `CheckpointManager` in the binding).
pub trait Checkpointer: Send + Sync {
    fn checkpoint(&self) -> CheckpointFuture;

    /// The incidents the checkpointer raised itself, by kind (for the metrics).
    fn incident_counts(&self) -> BTreeMap<IncidentKind, u64> {
        BTreeMap::new()
    }
}

#[derive(Clone, Default)]
pub struct SupervisorParts {
    pub memory_monitor: Option<Arc<MemoryMonitor>>,
    pub gpu_monitor: Option<Arc<GpuHealthMonitor>>,
    pub memory_recovery: Option<Arc<MemoryRecovery>>,
    pub gpu_recovery: Option<Arc<GpuRecovery>>,
    pub checkpointer: Option<Arc<dyn Checkpointer>>,
    pub incidents: Option<Arc<dyn IncidentSink>>,
    pub restart_process: Option<Arc<dyn Hook>>,
    /// Where each full check is recorded (`historyDir`): open while the loop runs.
    pub history: Option<Arc<Recording>>,
}

#[derive(Debug, Clone, Copy)]
pub struct SupervisorOptions {
    pub interval: Duration,
    pub auto_recover: bool,
    pub budget_max: u32,
    pub budget_window_ms: f64,
    pub checkpoint_interval: Option<Duration>,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
    /// Longest one check may take before the state is `unknown`.
    pub check_timeout: Duration,
    /// Longest `restartProcess` may take.
    pub step_timeout: Duration,
    /// Not ready when the last successful check is older than this.
    pub stale_after: Duration,
    /// Take a fast sample (memory only) this often between full checks; `None` for never.
    pub fast_sample: Option<Duration>,
    /// Raise `MEMORY_EXHAUSTION_FORECAST` when memory is projected full within this.
    pub forecast_horizon_ms: f64,
    /// Hold intake while a forecast stands.
    pub preemptive_pause: bool,
}

impl SupervisorOptions {
    /// `staleAfterMs` when not given: two intervals and a check timeout.
    pub fn default_stale_after(interval: Duration, check_timeout: Duration) -> Duration {
        let ms = stale_after_default_ms(interval.as_millis() as f64, check_timeout.as_millis() as f64);
        Duration::from_millis(ms as u64)
    }

    /// `fastSampleMs` when not given: never slower than the checks, nor faster than allowed.
    pub fn default_fast_sample(interval: Duration) -> Duration {
        let ms = FAST_SAMPLE_MS.default.min(interval.as_millis() as f64).max(FAST_SAMPLE_MS.min);
        Duration::from_millis(ms as u64)
    }
}

impl Default for SupervisorOptions {
    /// The documented defaults; `stale_after` and `fast_sample` follow the default interval.
    fn default() -> Self {
        let interval = Duration::from_millis(INTERVAL_MS.default as u64);
        let check_timeout = Duration::from_millis(CHECK_TIMEOUT_MS.default as u64);
        SupervisorOptions {
            interval,
            auto_recover: true,
            budget_max: BUDGET_MAX.default as u32,
            budget_window_ms: BUDGET_WINDOW_MS.default,
            checkpoint_interval: None,
            unhealthy_after: UNHEALTHY_AFTER.default as u32,
            healthy_after: HEALTHY_AFTER.default as u32,
            check_timeout,
            step_timeout: Duration::from_millis(STEP_TIMEOUT_MS.default as u64),
            stale_after: Self::default_stale_after(interval, check_timeout),
            fast_sample: Some(Self::default_fast_sample(interval)),
            forecast_horizon_ms: FORECAST_HORIZON_MS.default,
            preemptive_pause: true,
        }
    }
}

/// What the supervisor did about one issue.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryAction {
    pub kind: ActionKind,
    pub issue: Option<IssueCode>,
    pub device: Option<u32>,
    pub result: ActionResult,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorState {
    Starting,
    Healthy,
    Unhealthy,
    /// Monitoring keeps failing, or a check hung: nothing destructive is done on a guess.
    Unknown,
}

impl SupervisorState {
    pub fn as_str(self) -> &'static str {
        match self {
            SupervisorState::Starting => "starting",
            SupervisorState::Healthy => "healthy",
            SupervisorState::Unhealthy => "unhealthy",
            SupervisorState::Unknown => "unknown",
        }
    }
}

/// Something only an operator can fix (reset a GPU, reboot a node); intake stays paused.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorAction {
    pub code: IssueCode,
    pub device: Option<u32>,
    pub action: Action,
    pub message: String,
    pub since_ms: f64,
}

/// Counters for the metrics and the status.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub checks: u64,
    pub check_failures: u64,
    pub check_duration_sum_ms: f64,
    pub last_check_duration_ms: f64,
    /// Recoveries run, by (type, result).
    pub recoveries: BTreeMap<(ActionKind, ActionResult), u64>,
    /// Incidents the supervisor raised, by kind.
    pub incidents: BTreeMap<IncidentKind, u64>,
    /// Intake pauses begun, by reason (`pauses`).
    pub intake_pauses: BTreeMap<&'static str, u64>,
    pub last_checkpoint_ms: Option<f64>,
}

struct Judgement {
    state: SupervisorState,
    hysteresis: Hysteresis,
    budget: RecoveryBudget,
    backoff: Backoff,
    consecutive_failures: u32,
    budget_exhausted_reported: bool,
    /// Intake paused by the supervisor (thermal, operator action, budget), beside recovery's own.
    paused_reasons: BTreeMap<&'static str, String>,
    operator_actions: Vec<OperatorAction>,
    /// Last time a warning of each (code, device) went out.
    warned_at: HashMap<(IssueCode, Option<u32>), f64>,
    /// When `restartProcess` last succeeded for an issue of each device: the Xid that asked
    /// for it stays in the window afterwards, and must not ask again (only a newer one may).
    restart_requested_at: HashMap<Option<u32>, f64>,
    last_health: Option<SystemHealth>,
    last_full_health: Option<SystemHealth>,
    last_recovery: Option<Value>,
    last_checkpoint_at: Option<Instant>,
    /// When the loop started, the last check ended, and the last successful one ended.
    started_at_ms: Option<f64>,
    last_check_at_ms: Option<f64>,
    last_success_at_ms: Option<f64>,
    /// Why the last check failed; cleared by a success.
    last_failure: Option<String>,
    counters: Counters,
}

struct Running {
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

pub struct Supervisor {
    parts: SupervisorParts,
    options: SupervisorOptions,
    events: Arc<dyn EventSink>,
    judgement: Mutex<Judgement>,
    running: Mutex<Option<Running>>,
    /// Serialises recoveries started by the loop and by operators.
    recovering: tokio::sync::Mutex<()>,
    /// The loop's automatic recovery, run beside the checks; at most one at a time.
    recovery_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// How many automatic recoveries have ended. A check notes it before it samples: one that
    /// sampled while a recovery ended may have read the machine before that recovery acted,
    /// so it starts none (the next check judges what the recovery left).
    recoveries_ended: AtomicU64,
    /// Held by the health sample in the driver: a hung sample is never joined by another,
    /// so a hung driver holds one blocking thread, not one per check.
    sampling: Arc<tokio::sync::Mutex<()>>,
    /// Event sources wake the loop through it (the Xid watch; see `wake`).
    wake: Wake,
    /// Interrupts the supervisor's own runs (`restartProcess`) when it stops.
    interrupter: Interrupter,
    /// Crossings and forecasts from the fast samples, and the kernel's pressure watch. Locked
    /// before `judgement` where both are, never after.
    detection: Mutex<Detection>,
    /// A kernel pressure event asks the fast sampling for a sample now.
    sample_now: Arc<Notify>,
    /// The fast samples' monotonic clock (the forecasts' times).
    clock: Instant,
}

impl Supervisor {
    pub fn new(parts: SupervisorParts, options: SupervisorOptions, events: Arc<dyn EventSink>) -> Self {
        let wake = Wake::default();
        if let Some(gpu) = &parts.gpu_monitor {
            gpu.wake_on_events(wake.handle());
        }
        Supervisor {
            judgement: Mutex::new(Judgement {
                state: SupervisorState::Starting,
                hysteresis: Hysteresis::new(options.unhealthy_after, options.healthy_after),
                budget: RecoveryBudget::new(options.budget_max, options.budget_window_ms),
                backoff: Backoff::default(),
                consecutive_failures: 0,
                budget_exhausted_reported: false,
                paused_reasons: BTreeMap::new(),
                operator_actions: Vec::new(),
                warned_at: HashMap::new(),
                restart_requested_at: HashMap::new(),
                last_health: None,
                last_full_health: None,
                last_recovery: None,
                last_checkpoint_at: None,
                started_at_ms: None,
                last_check_at_ms: None,
                last_success_at_ms: None,
                last_failure: None,
                counters: Counters::default(),
            }),
            parts,
            options,
            events,
            running: Mutex::new(None),
            recovering: tokio::sync::Mutex::new(()),
            recovery_task: Mutex::new(None),
            recoveries_ended: AtomicU64::new(0),
            sampling: Arc::default(),
            wake,
            interrupter: Interrupter::default(),
            detection: Mutex::new(Detection::new(ForecastPolicy::with_horizon(options.forecast_horizon_ms))),
            sample_now: Arc::default(),
            clock: Instant::now(),
        }
    }

    pub fn parts(&self) -> &SupervisorParts {
        &self.parts
    }

    /// A handle event sources call to make the loop check now (see `wake`).
    pub fn wake_handle(&self) -> WakeHandle {
        self.wake.handle()
    }

    /// Whether the service should take new work: no recovery holds intake, and the
    /// supervisor has no reason of its own to hold it.
    pub fn accepting_requests(&self) -> bool {
        let recovery_paused = self.parts.memory_recovery.as_ref().is_some_and(|r| r.pause_incoming());
        !recovery_paused && lock(&self.judgement).paused_reasons.is_empty()
    }

    /// Checks health now, off the async threads and under the check timeout.
    pub async fn check_system_health(&self, check_type: CheckType) -> Result<SystemHealth, CheckError> {
        let (memory, gpu) = (self.parts.memory_monitor.clone(), self.parts.gpu_monitor.clone());
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.options.check_timeout;
        let timed_out = |waiting: &str| CheckError {
            timed_out: true,
            message: format!(
                "health check did not finish within {} ms{waiting}",
                self.options.check_timeout.as_millis()
            ),
        };
        let Ok(sampling) = tokio::time::timeout_at(deadline, self.sampling.clone().lock_owned()).await else {
            return Err(timed_out(" (the previous check is still waiting for the driver)"));
        };
        let sample = tokio::task::spawn_blocking(move || {
            let _sampling = sampling;
            let memory = memory.map(|m| {
                let (pressure, metrics) = m.check_memory_pressure();
                let issues = pressure_issues(&pressure, &metrics, &m.thresholds());
                (pressure, metrics, issues)
            });
            let detail = if check_type == CheckType::Quick { GpuDetail::Quick } else { GpuDetail::Health };
            let gpu = gpu.map(|g| g.check_gpu_health_with(detail));
            (memory, gpu)
        });
        let (memory, gpu) = match tokio::time::timeout_at(deadline, sample).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => {
                return Err(CheckError { timed_out: false, message: format!("health check panicked: {join}") })
            }
            Err(_) => return Err(timed_out("")),
        };
        let mut issues = Vec::new();
        let memory = memory.map(|(pressure, metrics, found)| {
            issues.extend(found);
            (pressure, metrics)
        });
        if let Some(report) = &gpu {
            issues.extend(report.issues.iter().cloned());
        }
        issues.extend(lock(&self.detection).forecasts.current().iter().map(detection::forecast_issue));
        Ok(SystemHealth {
            healthy: !issues.iter().any(|i| i.severity == Severity::Fail),
            check_type,
            timestamp_ms: unix_time_ms(),
            duration_ms: duration_ms(started.elapsed()),
            memory,
            gpu,
            issues,
            accepting_requests: self.accepting_requests(),
        })
    }

    async fn incident(&self, kind: IncidentKind, severity: IncidentSeverity, message: String, details: Value) {
        *lock(&self.judgement).counters.incidents.entry(kind).or_default() += 1;
        let mut payload =
            json!({ "kind": kind.as_str(), "severity": severity.as_str(), "message": message, "details": details });
        if let Some(sink) = self.parts.incidents.clone() {
            let incident = Incident::new(kind, severity, message, details);
            match tokio::task::spawn_blocking(move || sink.record(incident)).await {
                Ok(Ok(seq)) => payload["seq"] = json!(seq),
                Ok(Err(e)) => self
                    .events
                    .emit("error", json!({ "message": format!("incident log: {e}"), "kind": "incident_log" })),
                Err(e) => self.events.emit("error", json!({ "message": format!("incident log panicked: {e}") })),
            }
        }
        self.events.emit("incident", payload);
    }

    /// One turn of the loop: check, judge, start a recovery, checkpoint. Never fails.
    /// Abandoned (without a word) if `stopped` turns true while health is being checked: a
    /// check hung in the driver would otherwise hold `stop` for `check_timeout`. The
    /// recovery runs as its own task, so the next check comes on time while it runs.
    async fn turn(self: &Arc<Self>, stopped: &mut watch::Receiver<bool>) {
        let stop_requested = async {
            // An error means no one can stop this turn any more.
            if stopped.wait_for(|stopped| *stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let recoveries_ended_before = self.recoveries_ended.load(Ordering::SeqCst);
        let result = tokio::select! {
            biased;
            result = self.check_system_health(CheckType::Full) => result,
            () = stop_requested => return,
        };
        let health = match result {
            Ok(health) => health,
            Err(error) => return self.monitoring_failed(error).await,
        };
        let crossed = lock(&self.detection).crossing.crossed();
        let change = {
            let mut j = lock(&self.judgement);
            j.counters.checks += 1;
            j.counters.check_duration_sum_ms += health.duration_ms;
            j.counters.last_check_duration_ms = health.duration_ms;
            j.consecutive_failures = 0;
            j.last_check_at_ms = Some(health.timestamp_ms);
            j.last_success_at_ms = Some(health.timestamp_ms);
            j.last_failure = None;
            let severe = health
                .issues
                .iter()
                .any(|i| planner::bypasses_hysteresis(i) || detection::confirmed_by_fast_samples(i, &crossed));
            let change = j.hysteresis.observe(health.healthy, severe);
            j.state = if j.hysteresis.in_episode() { SupervisorState::Unhealthy } else { SupervisorState::Healthy };
            j.last_health = Some(health.clone());
            j.last_full_health = Some(health.clone());
            change
        };
        self.record_history(&health);
        self.events.emit("health", health_summary(&health));
        self.warn(&health).await;
        match change {
            EpisodeChange::Started => {
                let codes: Vec<&str> =
                    health.issues.iter().filter(|i| i.severity == Severity::Fail).map(|i| i.code.as_str()).collect();
                self.incident(
                    IncidentKind::HealthUnhealthy,
                    IncidentSeverity::Error,
                    format!("the service is unhealthy: {}", codes.join(", ")),
                    status::issues_json(&health.issues),
                )
                .await;
            }
            EpisodeChange::Ended => {
                self.end_episode().await;
                // Ending the episode released every pause; a standing forecast holds intake still.
                self.hold_intake_for_forecasts();
            }
            EpisodeChange::None => {}
        }
        let in_episode = lock(&self.judgement).hysteresis.in_episode();
        if in_episode && !health.healthy {
            self.events.emit("unhealthy", health_summary(&health));
            if self.options.auto_recover {
                self.start_recovery(health, recoveries_ended_before);
            }
        }
        self.checkpoint_if_due().await;
    }

    /// Runs the automatic recovery for `health` as its own task, unless one is under way
    /// (recoveries are single-flight: a check during a recovery starts none) or one ended
    /// after `recoveries_ended_before` was read, before the check sampled (its verdict may
    /// predate what that recovery did: acting on it would spend the budget, or declare it
    /// spent, on memory already freed).
    fn start_recovery(self: &Arc<Self>, health: SystemHealth, recoveries_ended_before: u64) {
        let mut task = lock(&self.recovery_task);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        if self.recoveries_ended.load(Ordering::SeqCst) != recoveries_ended_before {
            return;
        }
        let this = self.clone();
        *task = Some(tokio::spawn(async move {
            // Counted when the task ends, before it is seen finished.
            let _ended = CountOnDrop(&this.recoveries_ended);
            this.recover_automatically(&health).await;
            // Checks go on during a recovery, so its episode may have ended meanwhile, while the
            // recovery was busy and its pauses could not be released, or before it held one
            // (a hot GPU that cooled during a long device-lost flow): release them now.
            let ended = {
                let mut j = lock(&this.judgement);
                let ended = !j.hysteresis.in_episode();
                if ended {
                    j.release_episode_pauses();
                }
                ended
            };
            if ended {
                this.release_recovery_pause();
            }
        }));
    }

    /// Intake a memory recovery held only because of the episode reopens with it (not while
    /// that recovery still runs).
    fn release_recovery_pause(&self) {
        if let Some(recovery) = &self.parts.memory_recovery {
            if recovery.pause_incoming() && !recovery.core().busy() {
                recovery.resume();
            }
        }
    }

    async fn end_episode(&self) {
        let released = {
            let mut j = lock(&self.judgement);
            j.backoff.succeeded();
            j.release_episode_pauses()
        };
        self.release_recovery_pause();
        self.incident(
            IncidentKind::HealthRecovered,
            IncidentSeverity::Info,
            "the service is healthy again".to_owned(),
            json!({ "released_pauses": released.keys().collect::<Vec<_>>() }),
        )
        .await;
    }

    /// A check gave no answer. One that hung makes the state `unknown` at once (its last
    /// verdict no longer stands); errors do after `FAILURES_FOR_UNKNOWN` in a row, since a
    /// driver that answers with an error now and then is still being watched.
    async fn monitoring_failed(&self, error: CheckError) {
        let unknown = {
            let mut j = lock(&self.judgement);
            j.counters.check_failures += 1;
            j.consecutive_failures += 1;
            j.last_check_at_ms = Some(unix_time_ms());
            j.last_failure = Some(error.message.clone());
            if error.timed_out || j.consecutive_failures >= FAILURES_FOR_UNKNOWN {
                j.state = SupervisorState::Unknown;
            }
            j.state == SupervisorState::Unknown
        };
        self.record_failed_check();
        self.events.emit(
            "error",
            json!({
                "message": error.message,
                "kind": "monitoring",
                "state": if unknown { "unknown" } else { "degraded" },
                "timed_out": error.timed_out,
            }),
        );
        self.incident(
            IncidentKind::MonitoringError,
            IncidentSeverity::Error,
            format!("health check failed: {error}"),
            json!({ "unknown": unknown, "timed_out": error.timed_out }),
        )
        .await;
    }

    /// Warnings (`warn` issues, and `fail` issues too) at most once per `warning_interval`
    /// for the same issue on the same device.
    async fn warn(&self, health: &SystemHealth) {
        let interval =
            self.parts.memory_monitor.as_ref().map(|m| m.thresholds().warning_interval_ms).unwrap_or(60_000.0);
        let now = health.timestamp_ms;
        let due: Vec<HealthIssue> = {
            let mut j = lock(&self.judgement);
            health
                .issues
                .iter()
                .filter(|issue| {
                    let key = (issue.code, issue.device);
                    let due = j.warned_at.get(&key).is_none_or(|&at| now - at >= interval);
                    if due {
                        j.warned_at.insert(key, now);
                    }
                    due
                })
                .cloned()
                .collect()
        };
        for issue in due {
            let payload = issue_json(&issue);
            self.events.emit("warning", payload.clone());
            let kind = match issue.code {
                IssueCode::SystemMemoryPressure
                | IssueCode::GpuMemoryPressure
                | IssueCode::MemoryExhaustionForecast => IncidentKind::MemoryPressure,
                _ => IncidentKind::GpuIssue,
            };
            let severity =
                if issue.severity == Severity::Fail { IncidentSeverity::Error } else { IncidentSeverity::Warn };
            self.incident(kind, severity, issue.message.clone(), payload).await;
        }
    }

    async fn checkpoint_if_due(&self) {
        let (Some(interval), Some(checkpointer)) = (self.options.checkpoint_interval, self.parts.checkpointer.clone())
        else {
            return;
        };
        let due = {
            let j = lock(&self.judgement);
            j.last_checkpoint_at.is_none_or(|at| at.elapsed() >= interval)
        };
        if !due {
            return;
        }
        lock(&self.judgement).last_checkpoint_at = Some(Instant::now());
        match checkpointer.checkpoint().await {
            Ok(_) => lock(&self.judgement).counters.last_checkpoint_ms = Some(unix_time_ms()),
            Err(error) => {
                self.events
                    .emit("error", json!({ "message": format!("checkpoint failed: {error}"), "kind": "checkpoint" }));
                self.incident(
                    IncidentKind::CheckpointFailed,
                    IncidentSeverity::Error,
                    format!("periodic checkpoint failed: {error}"),
                    json!({}),
                )
                .await;
            }
        }
    }

    /// Records that a checkpoint was taken outside the loop (for the metrics).
    pub fn note_checkpoint(&self, at_ms: f64) {
        lock(&self.judgement).counters.last_checkpoint_ms = Some(at_ms);
    }

    /// Starts the loop on the runtime `spawn` puts it on; idempotent. Reopens the history a
    /// stop closed (`ERR_HISTORY_LOCKED` if another writer took it meanwhile).
    pub fn start(
        self: &Arc<Self>,
        spawn: impl FnOnce(LoopFuture) -> tokio::task::JoinHandle<()>,
    ) -> Result<(), crate::durable::DurableError> {
        let mut running = lock(&self.running);
        if running.is_some() {
            return Ok(());
        }
        if let Some(history) = &self.parts.history {
            history.ensure_open()?;
        }
        lock(&self.judgement).started_at_ms = Some(unix_time_ms());
        self.watch_pressure();
        let (stop, mut stopped) = watch::channel(false);
        let this = self.clone();
        let done = spawn(Box::pin(async move {
            this.report_history_repairs().await;
            let fast_sampling = this.clone().fast_sampling();
            let checks = async {
                loop {
                    // The next check is timed from the end of this one: checks never overlap.
                    let turn_started = tokio::time::Instant::now();
                    this.turn(&mut stopped).await;
                    if *stopped.borrow() {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(this.options.interval) => {}
                        _ = this.wake.woken() => {
                            // An event storm checks at most once per gap.
                            let gap = turn_started + Duration::from_millis(WAKE_MIN_GAP_MS);
                            tokio::select! {
                                _ = tokio::time::sleep_until(gap) => {}
                                _ = stopped.changed() => break,
                            }
                        }
                        _ = stopped.changed() => break,
                    }
                }
            };
            // Fast sampling never ends by itself: it ends with the checks.
            tokio::select! {
                () = checks => {}
                () = fast_sampling => {}
            }
            // No events after `stop` resolves: the recovery under way (interrupted by
            // `stop`) ends first.
            let recovery = lock(&this.recovery_task).take();
            if let Some(recovery) = recovery {
                let _ = recovery.await;
            }
        }));
        *running = Some(Running { stop, done });
        Ok(())
    }

    /// What opening the history repaired (a torn tail a crash left, a foreign file set
    /// aside), as incidents.
    async fn report_history_repairs(&self) {
        let Some(history) = &self.parts.history else { return };
        for problem in history.take_problems() {
            let message = format!("metrics history {}: {}", problem.file, problem.reason);
            let details = crate::durable::manager::problem_json(&problem);
            self.incident(IncidentKind::HistoryRepaired, IncidentSeverity::Warn, message, details).await;
        }
    }

    /// Records a full check in the history (no wait for the disk); reports a failed write
    /// of an earlier bucket as an `error` event.
    fn record_history(&self, health: &SystemHealth) {
        let at_ms = health.timestamp_ms.max(0.0) as u64;
        self.record_in_history(at_ms, |state, flags| crate::history::sample::records_of(health, state, flags));
    }

    /// Records the supervisor's state and pauses (no signals) for a check that failed: the
    /// history shows the service running but blind there, not absent.
    fn record_failed_check(&self) {
        self.record_in_history(unix_time_ms() as u64, crate::history::sample::failed_check);
    }

    /// The records `make` builds from the supervisor's state and pause flags, into the history.
    fn record_in_history(&self, at_ms: u64, make: impl FnOnce(HealthState, u8) -> Vec<crate::history::Record>) {
        let Some(history) = &self.parts.history else { return };
        let recovery_paused = self.parts.memory_recovery.as_ref().is_some_and(|r| r.pause_incoming());
        let (state, supervisor_paused) = {
            let j = lock(&self.judgement);
            (j.state, !j.paused_reasons.is_empty())
        };
        let state = match state {
            SupervisorState::Starting => HealthState::Starting,
            SupervisorState::Healthy => HealthState::Healthy,
            SupervisorState::Unhealthy => HealthState::Unhealthy,
            SupervisorState::Unknown => HealthState::Unknown,
        };
        let mut flags = 0;
        if recovery_paused || supervisor_paused {
            flags |= FLAG_INTAKE_CLOSED;
        }
        if recovery_paused {
            flags |= FLAG_RECOVERY_PAUSE;
        }
        if supervisor_paused {
            flags |= FLAG_SUPERVISOR_PAUSE;
        }
        if let Some(error) = history.record(at_ms, make(state, flags)) {
            self.events.emit(
                "error",
                json!({ "message": format!("metrics history: {}", error.message), "code": error.code, "kind": "history" }),
            );
        }
    }

    /// Stops the loop; resolves once no more events will come from it. Idempotent.
    ///
    /// A recovery under way (the loop's or an operator's) is interrupted: it abandons the
    /// wait it is in (for a hook, for a lost device to return) and is recorded `interrupted`,
    /// so stopping takes no longer than the turn's bookkeeping, never `deviceWaitMs` or a
    /// hook's `stepTimeoutMs`.
    pub async fn stop(&self) {
        let running = lock(&self.running).take();
        let Some(Running { stop, mut done }) = running else {
            // No loop; an operator's recovery may still be under way.
            self.interrupt_recoveries();
            return self.close_history().await;
        };
        let _ = stop.send(true);
        // Interrupted again until the loop ends: a recovery the turn starts after one
        // interrupt (it was checking health then) is caught by the next.
        loop {
            self.interrupt_recoveries();
            tokio::select! {
                _ = &mut done => break,
                _ = tokio::time::sleep(STOP_INTERRUPT_REPEAT) => {}
            }
        }
        let watcher = {
            let mut d = lock(&self.detection);
            d.reset(ForecastPolicy::with_horizon(self.options.forecast_horizon_ms));
            d.pressure.take()
        };
        if let Some(mut watcher) = watcher {
            // Signals the watch thread and joins it: it ends at once.
            watcher.stop();
        }
        self.close_history().await;
        let mut j = lock(&self.judgement);
        j.started_at_ms = None;
        // Nobody forecasts any more: the pause the forecasts held goes with them.
        j.paused_reasons.remove(detection::FORECAST_PAUSE);
    }

    /// Makes what the history's last buckets hold durable and frees its directory, unless a
    /// `start` during this stop has taken the history on again.
    async fn close_history(&self) {
        let Some(history) = self.parts.history.clone() else { return };
        let detached = {
            let running = lock(&self.running);
            if running.is_some() {
                None
            } else {
                history.detach()
            }
        };
        let Some(writer) = detached else { return };
        // A disk that does not answer must not hold `stop` (and a service's shutdown) for ever:
        // past the check timeout the flush goes on alone, and the directory stays locked until it ends.
        let wait = self.options.check_timeout;
        let closed = tokio::time::timeout(wait, tokio::task::spawn_blocking(move || history.finish(writer))).await;
        if let Some(message) = match closed {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(e.message),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "the last buckets were not durable within {} ms (the disk does not answer); the directory stays locked until they are",
                wait.as_millis()
            )),
        } {
            self.events.emit("error", json!({ "message": format!("metrics history: {message}"), "kind": "history" }));
        }
    }

    /// Starts watching the kernel's memory-pressure events of the cgroup the `memoryMonitor`
    /// reads (under its root: a monitor of a test's files does not watch this machine): an
    /// event wakes the loop for a full check and asks for a fast sample at once. Where the
    /// kernel offers none, fast sampling alone watches memory.
    fn watch_pressure(&self) {
        let Some(memory) = &self.parts.memory_monitor else { return };
        let wake = self.wake_handle();
        let sample_now = Arc::downgrade(&self.sample_now);
        // Runs on the watch thread: wake and return.
        let on_event: crate::sampling::pressure_events::WakeFn = Arc::new(move |_event| {
            wake.wake(WakeSource::MemoryPressure);
            if let Some(sample_now) = sample_now.upgrade() {
                sample_now.notify_one();
            }
        });
        match PressureWatcher::start_for_process(memory.sampler().root(), PsiTrigger::DEFAULT, on_event) {
            Ok(watcher) => lock(&self.detection).pressure = Some(watcher),
            Err(error) => self.events.emit(
                "error",
                json!({ "message": format!("kernel memory-pressure events unavailable: {error}"), "kind": "pressure_events" }),
            ),
        }
    }

    /// Takes a fast sample every `fastSampleMs`, and at once on a kernel pressure event,
    /// until dropped. Never resolves (pending for ever when fast sampling is off).
    async fn fast_sampling(self: Arc<Self>) {
        let (Some(period), Some(memory)) = (self.options.fast_sample, self.parts.memory_monitor.clone()) else {
            return std::future::pending().await;
        };
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = self.sample_now.notified() => {}
            }
            // One sample at a time, and none while a check reads the driver: a hung driver
            // holds one blocking thread, and the ticks meanwhile are skipped.
            let Ok(sampling) = self.sampling.clone().try_lock_owned() else { continue };
            let at_ms = self.clock.elapsed().as_secs_f64() * 1000.0;
            let monitor = memory.clone();
            let sample = tokio::task::spawn_blocking(move || {
                let _sampling = sampling;
                take_fast_sample(monitor.sampler(), at_ms)
            });
            if let Ok(sample) = sample.await {
                self.observe_fast_sample(&sample, &memory.thresholds()).await;
            }
        }
    }

    /// Feeds one fast sample to the crossing detector and the forecasts: a confirmed
    /// crossing wakes the loop (the full check then starts the episode at once), a raised
    /// forecast is a warning at once, and the forecasts' intake pause follows them.
    async fn observe_fast_sample(&self, sample: &FastSample, thresholds: &MemoryThresholds) {
        let (crossed, transitions) = {
            let mut d = lock(&self.detection);
            let crossed = d
                .crossing
                .observe_sample(sample, thresholds)
                .iter()
                .any(|c| matches!(c, CrossingChange::Crossed { .. }));
            (crossed, d.forecasts.observe_sample(sample, thresholds))
        };
        if crossed {
            self.wake.handle().wake(WakeSource::FastSample);
        }
        // Raised, cleared, or the standing forecasts' times moved: the pause follows.
        self.hold_intake_for_forecasts();
        for transition in transitions {
            let ForecastTransition::Raised(forecast) = transition else { continue };
            self.forecast_raised(&forecast).await;
        }
    }

    /// A new forecast is a warning at once (and counts as the warning of its issue for the
    /// rate limit of the checks' warnings), and an incident.
    async fn forecast_raised(&self, forecast: &ExhaustionForecast) {
        let issue = detection::forecast_issue(forecast);
        lock(&self.judgement).warned_at.insert((issue.code, issue.device), unix_time_ms());
        let payload = issue_json(&issue);
        self.events.emit("warning", payload.clone());
        self.incident(IncidentKind::MemoryPressure, IncidentSeverity::Warn, issue.message.clone(), payload).await;
    }

    /// Holds intake while a forecast stands (`preemptivePause`), lifts it when none does.
    fn hold_intake_for_forecasts(&self) {
        let reason = if self.options.preemptive_pause {
            detection::forecast_pause_reason(&lock(&self.detection).forecasts.current())
        } else {
            None
        };
        let mut j = lock(&self.judgement);
        match reason {
            Some(reason) => j.hold_intake(detection::FORECAST_PAUSE, reason),
            None => drop(j.paused_reasons.remove(detection::FORECAST_PAUSE)),
        }
    }

    /// `status().detection`: what watches between the checks.
    fn detection_status(&self) -> Value {
        let d = lock(&self.detection);
        let fast = self.options.fast_sample.filter(|_| self.parts.memory_monitor.is_some());
        json!({
            "fast_sample_ms": fast.map(|p| p.as_millis() as u64),
            "pressure_sources": d.pressure_sources(),
            "forecasts": d.forecasts.current().iter().map(detection::forecast_json).collect::<Vec<_>>(),
        })
    }

    /// Interrupts every recovery run under way (see `Interrupter`).
    pub fn interrupt_recoveries(&self) {
        self.interrupter.interrupt();
        if let Some(recovery) = &self.parts.memory_recovery {
            recovery.core().interrupt();
        }
        if let Some(recovery) = &self.parts.gpu_recovery {
            recovery.core().interrupt();
        }
    }

    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    pub fn counters(&self) -> Counters {
        lock(&self.judgement).counters.clone()
    }

    pub fn last_full_health(&self) -> Option<SystemHealth> {
        lock(&self.judgement).last_full_health.clone()
    }

    /// Remembers a health check made on request, for the status and the metrics.
    pub fn remember(&self, health: &SystemHealth) {
        let mut j = lock(&self.judgement);
        j.last_health = Some(health.clone());
        if health.check_type == CheckType::Full {
            j.last_full_health = Some(health.clone());
        }
    }

    /// The incidents raised by the supervisor and by the parts it was given, by kind.
    pub fn incident_counts(&self) -> BTreeMap<IncidentKind, u64> {
        let mut counts = lock(&self.judgement).counters.incidents.clone();
        let recoveries = [
            self.parts.memory_recovery.as_ref().map(|r| r.core().incident_counts()),
            self.parts.gpu_recovery.as_ref().map(|r| r.core().incident_counts()),
        ];
        let checkpoints = self.parts.checkpointer.as_ref().map(|c| c.incident_counts());
        for part in recoveries.into_iter().chain([checkpoints]).flatten() {
            for (kind, n) in part {
                *counts.entry(kind).or_default() += n;
            }
        }
        counts
    }

    /// The Prometheus text exposition of the last full check and the counters.
    pub fn metrics_text(&self) -> String {
        let health = self.last_full_health();
        let counters = self.counters();
        let incidents = self.incident_counts();
        let (monitoring_unknown, last_check_at_ms, last_success_at_ms, paused_reasons) = {
            let j = lock(&self.judgement);
            let paused = j.paused_reasons.keys().copied().collect();
            (j.state == SupervisorState::Unknown, j.last_check_at_ms, j.last_success_at_ms, paused)
        };
        let (xid_totals, uuids) = match &self.parts.gpu_monitor {
            Some(gpu) => {
                (gpu.xid_totals(), gpu.session().known_devices().into_iter().map(|d| (d.index, d.uuid)).collect())
            }
            None => Default::default(),
        };
        metrics::render(&metrics::MetricsInput {
            health: health.as_ref(),
            counters: &counters,
            incidents: &incidents,
            accepting_requests: self.accepting_requests(),
            paused_reasons,
            monitoring_unknown,
            last_check_at_ms,
            last_success_at_ms,
            xid_totals,
            uuids,
            process_heap: crate::sampling::process_heap::read(),
        })
    }

    pub fn status(&self) -> Value {
        let now = unix_time_ms();
        let accepting = self.accepting_requests();
        let recovery_paused = self.parts.memory_recovery.as_ref().is_some_and(|r| r.pause_incoming());
        let running = lock(&self.running).is_some();
        let detection = self.detection_status();
        let mut j = lock(&self.judgement);
        let used = j.budget.used(now);
        let mut reasons = status::not_ready_reasons(&status::ReadinessInput {
            now_ms: now,
            state: j.state,
            running,
            started_at_ms: j.started_at_ms,
            last_success_at_ms: j.last_success_at_ms,
            stale_after_ms: self.options.stale_after.as_secs_f64() * 1000.0,
            last_failure: j.last_failure.as_deref(),
            last_full_health: j.last_full_health.as_ref(),
            paused_reasons: &j.paused_reasons,
            recovery_paused,
        });
        // Read at another moment than the reasons; never ready when intake is closed.
        if !accepting && reasons.is_empty() {
            reasons.push("supervisor: not accepting requests".to_owned());
        }
        json!({
            "state": j.state.as_str(),
            "running": running,
            "ready": reasons.is_empty(),
            "not_ready_reasons": reasons,
            "accepting_requests": accepting,
            "paused_reasons": j.paused_reasons,
            "recovery_paused": recovery_paused,
            "in_episode": j.hysteresis.in_episode(),
            "consecutive_failures": j.consecutive_failures,
            "last_check": j.last_health.as_ref().map(health_summary),
            "last_check_at": j.last_check_at_ms,
            "last_success_at": j.last_success_at_ms,
            "budget": { "max": j.budget.max, "window_ms": j.budget.window_ms, "used": used, "exhausted": used >= j.budget.max },
            "next_recovery_not_before": j.backoff.not_before_ms(),
            "operator_actions": j.operator_actions.iter().map(|a| json!({
                "code": a.code.as_str(), "device": a.device, "action": a.action.as_str(), "message": a.message, "since": a.since_ms,
            })).collect::<Vec<_>>(),
            "last_recovery": j.last_recovery,
            "last_checkpoint": j.counters.last_checkpoint_ms,
            "checks": j.counters.checks,
            "check_failures": j.counters.check_failures,
            "detection": detection,
        })
    }
}

/// Adds one to its counter when dropped: at the end of a task, whether it ran out or was aborted.
struct CountOnDrop<'a>(&'a AtomicU64);

impl Drop for CountOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::fast::GpuMemorySample;

    const GIB: u64 = 1 << 30;
    const TOTAL: u64 = 80 * GIB;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(&'static str, Value)>>);
    impl EventSink for Recorder {
        fn emit(&self, event: &'static str, payload: Value) {
            lock(&self.0).push((event, payload));
        }
    }

    fn supervisor(preemptive_pause: bool) -> (Arc<Supervisor>, Arc<Recorder>) {
        let options = SupervisorOptions { auto_recover: false, preemptive_pause, ..SupervisorOptions::default() };
        let events = Arc::new(Recorder::default());
        (Arc::new(Supervisor::new(SupervisorParts::default(), options, events.clone())), events)
    }

    #[test]
    fn default_options_are_the_documented_ones_and_derived_defaults_follow_the_interval() {
        let o = SupervisorOptions::default();
        assert_eq!(
            (o.interval, o.check_timeout, o.step_timeout),
            (Duration::from_secs(60), Duration::from_secs(10), Duration::from_secs(30))
        );
        assert_eq!((o.auto_recover, o.preemptive_pause, o.checkpoint_interval), (true, true, None));
        assert_eq!((o.budget_max, o.budget_window_ms), (3, 600_000.0));
        assert_eq!((o.unhealthy_after, o.healthy_after, o.forecast_horizon_ms), (2, 2, 60_000.0));
        // 2 × interval + check timeout.
        assert_eq!(o.stale_after, Duration::from_secs(130));
        assert_eq!(o.fast_sample, Some(Duration::from_secs(1)));
        assert_eq!(SupervisorOptions::default_fast_sample(Duration::from_millis(200)), Duration::from_millis(200));
        assert_eq!(SupervisorOptions::default_fast_sample(Duration::from_millis(10)), Duration::from_millis(50));
        assert_eq!(
            SupervisorOptions::default_stale_after(Duration::from_secs(5), Duration::from_secs(1)),
            Duration::from_secs(11)
        );
    }

    fn sample(at_ms: f64, used: u64) -> FastSample {
        FastSample {
            at_ms,
            gpus: vec![GpuMemorySample { index: 0, used, total: TOTAL, lost: false, error: None }],
            gpu_error: None,
            host: None,
            host_error: Some("not sampled".to_owned()),
        }
    }

    fn forecast_warnings(events: &Recorder) -> usize {
        lock(&events.0).iter().filter(|(e, p)| *e == "warning" && p["code"] == "MEMORY_EXHAUSTION_FORECAST").count()
    }

    fn gpu_memory_full() -> SystemHealth {
        SystemHealth {
            healthy: false,
            check_type: CheckType::Full,
            timestamp_ms: unix_time_ms(),
            duration_ms: 1.0,
            memory: None,
            gpu: None,
            issues: vec![HealthIssue::new(IssueCode::GpuMemoryPressure, Some(0), "GPU 0 memory full".to_owned())],
            accepting_requests: true,
        }
    }

    /// Starts an automatic recovery for `health` as a check that noted `ended_before`, and
    /// waits for it: the recovery budget used afterwards.
    async fn recovery_from_check(sup: &Arc<Supervisor>, health: SystemHealth, ended_before: u64) -> u64 {
        sup.start_recovery(health, ended_before);
        while lock(&sup.recovery_task).as_ref().is_some_and(|t| !t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sup.status()["budget"]["used"].as_u64().unwrap()
    }

    #[tokio::test]
    async fn a_check_that_sampled_while_a_recovery_ended_starts_none() {
        let (sup, _events) = supervisor(true);
        let first_check = sup.recoveries_ended.load(Ordering::SeqCst);
        assert_eq!(recovery_from_check(&sup, gpu_memory_full(), first_check).await, 1, "the first check's recovery");
        assert_eq!(sup.recoveries_ended.load(Ordering::SeqCst), first_check + 1);
        // A second check sampled while that recovery ran (it noted the same count): its
        // verdict may predate the memory the recovery freed. No recovery, no budget spent.
        assert_eq!(
            recovery_from_check(&sup, gpu_memory_full(), first_check).await,
            1,
            "a stale verdict spent the budget"
        );
        assert_eq!(sup.recoveries_ended.load(Ordering::SeqCst), first_check + 1);
        // A check that sampled after the recovery ended acts.
        assert_eq!(recovery_from_check(&sup, gpu_memory_full(), first_check + 1).await, 2);
    }

    #[tokio::test]
    async fn a_disk_that_does_not_answer_does_not_hold_stop() {
        use crate::durable::{FaultPlan, IoOp, Storage};
        let root = tempfile::tempdir().unwrap();
        let stalled = Storage::with_faults(FaultPlan::new().delay(IoOp::Sync, Duration::from_secs(3)));
        let policy = crate::history::HistoryPolicy::with_step(1000);
        let history = Arc::new(Recording::open_with(&root.path().join("history"), policy, stalled).unwrap());
        history.record(5_500, vec![crate::history::Record::new(crate::history::Source::Host, 1, 0)]);
        let parts = SupervisorParts { history: Some(history), ..SupervisorParts::default() };
        let options = SupervisorOptions { check_timeout: Duration::from_millis(200), ..SupervisorOptions::default() };
        let events = Arc::new(Recorder::default());
        let sup = Supervisor::new(parts, options, events.clone());
        tokio::time::timeout(Duration::from_secs(2), sup.stop()).await.expect("stop waited for the stalled fdatasync");
        let errors: Vec<Value> =
            lock(&events.0).iter().filter(|(e, _)| *e == "error").map(|(_, p)| p.clone()).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0]["message"].as_str().unwrap().contains("not durable within 200 ms"), "{errors:?}");
    }

    #[tokio::test]
    async fn a_pause_a_recovery_planned_for_an_episode_that_ended_meanwhile_does_not_stand() {
        let (sup, events) = supervisor(true);
        // A lost GPU and a hot one: the recovery runs the device-lost flow, then holds intake for
        // the heat. Here no episode is open when it ends (it ended while the recovery ran, as
        // when the GPU cooled meanwhile): nothing would ever release that pause.
        let mut health = gpu_memory_full();
        health.issues = vec![
            HealthIssue::new(IssueCode::GpuLost, Some(0), "GPU 0 lost".to_owned()),
            HealthIssue::new(IssueCode::TemperatureHigh, Some(1), "GPU 1 at 91 °C".to_owned()),
        ];
        recovery_from_check(&sup, health, sup.recoveries_ended.load(Ordering::SeqCst)).await;
        let actions = lock(&events.0).iter().find(|(e, _)| *e == "recovery").map(|(_, p)| p.clone()).unwrap();
        assert!(actions.to_string().contains("pause_intake"), "the recovery held intake for the heat: {actions}");
        assert!(sup.accepting_requests(), "a pause outlived its episode: {}", sup.status()["paused_reasons"]);
    }

    #[tokio::test]
    async fn a_ramp_warns_at_once_holds_intake_while_the_forecast_stands_and_releases_it_when_freed() {
        let thresholds = MemoryThresholds { gpu_memory: 0.9, ..MemoryThresholds::default() };
        let (sup, events) = supervisor(true);
        // 2 GiB/s from 1 GiB, one sample a second.
        let mut at = 0.0;
        while forecast_warnings(&events) == 0 {
            assert!(at < 30_000.0, "no forecast after 30 s of a 2 GiB/s ramp");
            sup.observe_fast_sample(&sample(at, GIB + (2.0 * GIB as f64 * at / 1000.0) as u64), &thresholds).await;
            at += 1000.0;
        }
        let warning = lock(&events.0).iter().find(|(e, _)| *e == "warning").unwrap().1.clone();
        assert_eq!((warning["severity"].as_str(), warning["device"].as_u64()), (Some("warn"), Some(0)));
        assert!(warning["eta_ms"].as_u64().is_some_and(|eta| eta > 0 && eta < 60_000), "{warning}");
        assert!(!sup.accepting_requests());
        let status = sup.status();
        assert!(status["paused_reasons"]["forecast"].as_str().unwrap().starts_with("GPU 0 memory full in ~"));
        assert_eq!(status["detection"]["forecasts"].as_array().unwrap().len(), 1);
        assert!(lock(&events.0).iter().all(|(e, _)| *e != "recovery" && *e != "unhealthy"));
        // The pause is renewed by each sample of the ramp, and counted once, apart from recoveries.
        sup.observe_fast_sample(&sample(at, GIB + (2.0 * GIB as f64 * at / 1000.0) as u64), &thresholds).await;
        at += 1000.0;
        let metrics = sup.metrics_text();
        assert!(metrics.contains("\nhpc_health_intake_pauses_total{reason=\"forecast\"} 1\n"), "{metrics}");
        assert!(metrics.contains("\nhpc_health_intake_paused{reason=\"forecast\"} 1\n"), "{metrics}");
        assert!(metrics.contains("\nhpc_health_incidents_total{kind=\"memory_pressure\"} 1\n"), "{metrics}");
        // Freed: the forecast clears within a few samples, and the pause with it.
        for _ in 0..5 {
            sup.observe_fast_sample(&sample(at, GIB), &thresholds).await;
            at += 1000.0;
        }
        assert!(sup.metrics_text().contains("\nhpc_health_intake_paused{reason=\"forecast\"} 0\n"));
        assert!(sup.accepting_requests(), "{}", sup.status()["paused_reasons"]);
        assert_eq!(sup.status()["detection"]["forecasts"], json!([]));
        assert_eq!(forecast_warnings(&events), 1, "one warning per raise");
    }

    #[tokio::test]
    async fn without_preemptive_pause_a_forecast_warns_and_intake_stays_open() {
        let thresholds = MemoryThresholds { gpu_memory: 0.9, ..MemoryThresholds::default() };
        let (sup, events) = supervisor(false);
        for second in 0u32..30 {
            let at = f64::from(second) * 1000.0;
            sup.observe_fast_sample(&sample(at, GIB + 2 * GIB * u64::from(second)), &thresholds).await;
            assert!(sup.accepting_requests());
        }
        assert_eq!(forecast_warnings(&events), 1);
    }

    #[tokio::test]
    async fn two_samples_over_the_threshold_wake_the_loop_and_one_does_not() {
        let thresholds = MemoryThresholds { gpu_memory: 0.9, ..MemoryThresholds::default() };
        let (sup, _events) = supervisor(true);
        let full = TOTAL / 100 * 99;
        sup.observe_fast_sample(&sample(0.0, full), &thresholds).await;
        assert!(tokio::time::timeout(Duration::from_millis(50), sup.wake.woken()).await.is_err(), "one sample woke it");
        sup.observe_fast_sample(&sample(1000.0, full), &thresholds).await;
        tokio::time::timeout(Duration::from_secs(5), sup.wake.woken()).await.expect("the confirmed crossing's wake");
        assert_eq!(lock(&sup.detection).crossing.crossed(), vec![crate::sampling::fast::MemorySignal::Gpu(0)]);
    }
}
