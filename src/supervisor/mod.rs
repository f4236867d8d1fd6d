//! The health supervisor: the requirements' `startHealthCheck` loop, run off the JS thread.
//! Checks never overlap (a slow check delays the next), a monitoring failure is reported
//! without killing the loop, recoveries are single-flight and bounded by a budget with
//! backoff, and an episode starts and ends only after enough checks agree.

pub mod episode;
pub mod metrics;

use crate::incident::{Incident, IncidentSeverity, IncidentSink};
use crate::monitors::gpu_health::{GpuHealthMonitor, GpuHealthReport};
use crate::monitors::memory::MemoryMonitor;
use crate::policy::issues::{Action, HealthIssue, IssueCode, Severity};
use crate::policy::pressure::{pressure_issues, MemoryPressure};
use crate::policy::thresholds::FAILURES_FOR_UNKNOWN;
use crate::recovery::engine::{Hook, Interrupter, RecoveryOutcome, RunResult};
use crate::recovery::gpu::GpuRecovery;
use crate::recovery::memory::MemoryRecovery;
use crate::sampling::gpu::GpuDetail;
use crate::sampling::memory::MemoryMetrics;
use crate::sampling::unix_time_ms;
use episode::{jitter, Backoff, EpisodeChange, Hysteresis, RecoveryBudget};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

// The kinds of check and recovery operators ask for are the RPC layer's words.
pub use crate::rpc::{CheckType, RecoveryType};

/// While `stop` waits for the loop, how often it interrupts recoveries again.
const STOP_INTERRUPT_REPEAT: Duration = Duration::from_millis(50);

/// One health check of the whole system.
#[derive(Debug, Clone)]
pub struct SystemHealth {
    pub healthy: bool,
    pub check_type: CheckType,
    pub timestamp_ms: f64,
    pub duration_ms: f64,
    pub memory: Option<(MemoryPressure, MemoryMetrics)>,
    pub gpu: Option<GpuHealthReport>,
    pub issues: Vec<HealthIssue>,
    pub accepting_requests: bool,
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
    /// Longest one check may take before it counts as a monitoring failure.
    pub check_timeout: Duration,
    /// Longest `restartProcess` may take.
    pub step_timeout: Duration,
}

/// What the supervisor did about one issue.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryAction {
    /// `memory`, `out_of_memory`, `device_lost`, `process`, `pause_intake`, `operator`.
    pub kind: &'static str,
    pub issue: Option<IssueCode>,
    pub device: Option<u32>,
    /// `recovered`, `not_recovered`, `failed`, `interrupted`, `paused`, `skipped`.
    pub result: &'static str,
    pub detail: Option<String>,
}

impl RecoveryAction {
    /// A recovery that could not run for want of what it needs (a hook, a recovery attached).
    fn skipped(kind: &'static str, detail: &str) -> Self {
        RecoveryAction { kind, issue: None, device: None, result: "skipped", detail: Some(detail.to_owned()) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorState {
    Starting,
    Healthy,
    Unhealthy,
    /// Monitoring keeps failing: nothing destructive is done on a guess.
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
    /// By (type, result).
    pub recoveries: BTreeMap<(String, String), u64>,
    /// By kind.
    pub incidents: BTreeMap<String, u64>,
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
    /// Interrupts the supervisor's own runs (`restartProcess`) when it stops.
    interrupter: Interrupter,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Supervisor {
    pub fn new(parts: SupervisorParts, options: SupervisorOptions, events: Arc<dyn EventSink>) -> Self {
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
                counters: Counters::default(),
            }),
            parts,
            options,
            events,
            running: Mutex::new(None),
            recovering: tokio::sync::Mutex::new(()),
            interrupter: Interrupter::default(),
        }
    }

    pub fn parts(&self) -> &SupervisorParts {
        &self.parts
    }

    /// Whether the service should take new work: no recovery holds intake, and the
    /// supervisor has no reason of its own to hold it.
    pub fn accepting_requests(&self) -> bool {
        let recovery_paused = self.parts.memory_recovery.as_ref().is_some_and(|r| r.pause_incoming());
        !recovery_paused && lock(&self.judgement).paused_reasons.is_empty()
    }

    /// Checks health now, off the async threads and under the check timeout.
    pub async fn check_system_health(&self, check_type: CheckType) -> Result<SystemHealth, String> {
        let (memory, gpu) = (self.parts.memory_monitor.clone(), self.parts.gpu_monitor.clone());
        let started = Instant::now();
        let sample = tokio::task::spawn_blocking(move || {
            let memory = memory.map(|m| {
                let (pressure, metrics) = m.check_memory_pressure();
                let issues = pressure_issues(&pressure, &metrics, &m.thresholds());
                (pressure, metrics, issues)
            });
            let detail = if check_type == CheckType::Quick { GpuDetail::Quick } else { GpuDetail::Health };
            let gpu = gpu.map(|g| g.check_gpu_health_with(detail));
            (memory, gpu)
        });
        let (memory, gpu) = match tokio::time::timeout(self.options.check_timeout, sample).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => return Err(format!("health check panicked: {join}")),
            Err(_) => {
                return Err(format!("health check did not finish within {} ms", self.options.check_timeout.as_millis()))
            }
        };
        let mut issues = Vec::new();
        let memory = memory.map(|(pressure, metrics, found)| {
            issues.extend(found);
            (pressure, metrics)
        });
        if let Some(report) = &gpu {
            issues.extend(report.issues.iter().cloned());
        }
        Ok(SystemHealth {
            healthy: !issues.iter().any(|i| i.severity == Severity::Fail),
            check_type,
            timestamp_ms: unix_time_ms(),
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            memory,
            gpu,
            issues,
            accepting_requests: self.accepting_requests(),
        })
    }

    async fn incident(&self, kind: &str, severity: IncidentSeverity, message: String, details: Value) {
        *lock(&self.judgement).counters.incidents.entry(kind.to_owned()).or_default() += 1;
        let mut payload =
            json!({ "kind": kind, "severity": severity.as_str(), "message": message, "details": details });
        if let Some(sink) = self.parts.incidents.clone() {
            let incident = Incident { kind: kind.to_owned(), severity, message, details };
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

    /// One turn of the loop: check, judge, recover, checkpoint. Never fails.
    pub async fn tick(&self) {
        self.tick_unless_stopped(&mut watch::channel(false).1).await;
    }

    /// `tick`, abandoned (without a word) if `stopped` turns true while health is being
    /// checked: a check hung in the driver would otherwise hold `stop` for `check_timeout`.
    /// Once judged, the turn runs to its end (a recovery in it is interrupted by `stop`).
    async fn tick_unless_stopped(&self, stopped: &mut watch::Receiver<bool>) {
        let stop_requested = async {
            // An error means no one can stop this turn any more.
            if stopped.wait_for(|stopped| *stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            biased;
            result = self.check_system_health(CheckType::Full) => result,
            () = stop_requested => return,
        };
        let health = match result {
            Ok(health) => health,
            Err(error) => return self.monitoring_failed(error).await,
        };
        let change = {
            let mut j = lock(&self.judgement);
            j.counters.checks += 1;
            j.counters.check_duration_sum_ms += health.duration_ms;
            j.counters.last_check_duration_ms = health.duration_ms;
            j.consecutive_failures = 0;
            let change = j.hysteresis.observe(health.healthy);
            j.state = if j.hysteresis.in_episode() { SupervisorState::Unhealthy } else { SupervisorState::Healthy };
            j.last_health = Some(health.clone());
            j.last_full_health = Some(health.clone());
            change
        };
        self.events.emit("health", health_summary(&health));
        self.warn(&health).await;
        match change {
            EpisodeChange::Started => {
                let codes: Vec<&str> =
                    health.issues.iter().filter(|i| i.severity == Severity::Fail).map(|i| i.code.as_str()).collect();
                self.incident(
                    "health_unhealthy",
                    IncidentSeverity::Error,
                    format!("the service is unhealthy: {}", codes.join(", ")),
                    issues_json(&health.issues),
                )
                .await;
            }
            EpisodeChange::Ended => {
                self.end_episode().await;
            }
            EpisodeChange::None => {}
        }
        let in_episode = lock(&self.judgement).hysteresis.in_episode();
        if in_episode && !health.healthy {
            self.events.emit("unhealthy", health_summary(&health));
            if self.options.auto_recover {
                self.recover_automatically(&health).await;
            }
        }
        self.checkpoint_if_due().await;
    }

    async fn end_episode(&self) {
        let released = {
            let mut j = lock(&self.judgement);
            j.backoff.succeeded();
            j.budget_exhausted_reported = false;
            j.operator_actions.clear();
            std::mem::take(&mut j.paused_reasons)
        };
        if let Some(recovery) = &self.parts.memory_recovery {
            // Intake held only because of the episode reopens with it.
            if recovery.pause_incoming() && !recovery.core().busy() {
                recovery.resume();
            }
        }
        self.incident(
            "health_recovered",
            IncidentSeverity::Info,
            "the service is healthy again".to_owned(),
            json!({ "released_pauses": released.keys().collect::<Vec<_>>() }),
        )
        .await;
    }

    async fn monitoring_failed(&self, error: String) {
        let unknown = {
            let mut j = lock(&self.judgement);
            j.counters.check_failures += 1;
            j.consecutive_failures += 1;
            if j.consecutive_failures >= FAILURES_FOR_UNKNOWN {
                j.state = SupervisorState::Unknown;
            }
            j.state == SupervisorState::Unknown
        };
        self.events.emit(
            "error",
            json!({ "message": error, "kind": "monitoring", "state": if unknown { "unknown" } else { "degraded" } }),
        );
        self.incident(
            "monitoring_error",
            IncidentSeverity::Error,
            format!("health check failed: {error}"),
            json!({ "unknown": unknown }),
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
                IssueCode::SystemMemoryPressure | IssueCode::GpuMemoryPressure => "memory_pressure",
                _ => "gpu_issue",
            };
            let severity =
                if issue.severity == Severity::Fail { IncidentSeverity::Error } else { IncidentSeverity::Warn };
            self.incident(kind, severity, issue.message.clone(), payload).await;
        }
    }

    async fn recover_automatically(&self, health: &SystemHealth) {
        let now = unix_time_ms();
        let state = lock(&self.judgement).state;
        // Nothing to do (or only pauses already in effect) takes nothing from the budget.
        if state == SupervisorState::Unknown || self.plan(health).is_empty() {
            return;
        }
        let (allowed, report_exhausted) = {
            let mut j = lock(&self.judgement);
            if !j.backoff.ready(now) {
                (false, false)
            } else if j.budget.try_take(now) {
                (true, false)
            } else {
                let first = !j.budget_exhausted_reported;
                j.budget_exhausted_reported = true;
                j.paused_reasons.insert("budget", "the recovery budget is spent".to_owned());
                (false, first)
            }
        };
        if report_exhausted {
            if let Some(recovery) = &self.parts.memory_recovery {
                recovery.pause();
            }
            self.incident(
                "recovery_budget_exhausted",
                IncidentSeverity::Critical,
                format!(
                    "{} recoveries in {} ms and the service is still unhealthy: automatic recovery stops and intake stays paused until an operator acts or health returns",
                    self.options.budget_max, self.options.budget_window_ms
                ),
                issues_json(&health.issues),
            )
            .await;
        }
        if !allowed {
            return;
        }
        let actions = self.trigger_recovery(health).await;
        let succeeded =
            !actions.is_empty() && actions.iter().all(|a| matches!(a.result, "recovered" | "paused" | "skipped"));
        let mut j = lock(&self.judgement);
        if succeeded {
            j.backoff.succeeded();
        } else {
            j.backoff.failed(now, jitter());
        }
    }

    /// What each failing issue calls for, once per kind (every operator issue on its own),
    /// leaving out pauses already in effect.
    fn plan(&self, health: &SystemHealth) -> Vec<(&'static str, HealthIssue)> {
        let j = lock(&self.judgement);
        let mut plans: Vec<(&'static str, HealthIssue)> = Vec::new();
        for issue in health.issues.iter().filter(|i| i.severity == Severity::Fail) {
            let plan = match (issue.code, issue.action) {
                (IssueCode::SystemMemoryPressure | IssueCode::GpuMemoryPressure, _) => "memory",
                (IssueCode::GpuLost, _) => "device_lost",
                (IssueCode::FragmentationHigh, _) => "out_of_memory",
                // Less work lets a hot GPU cool; nothing else in reach of the service helps.
                (IssueCode::TemperatureHigh, _) => "pause_intake",
                // Without a hook, restarting the application is an operator's job.
                (_, Action::RestartApp) if self.parts.restart_process.is_some() => "process",
                (_, Action::RestartApp | Action::ResetGpu | Action::RebootNode) => "operator",
                _ => continue,
            };
            let in_effect = match plan {
                "pause_intake" => j.paused_reasons.contains_key("thermal"),
                "operator" => j.operator_actions.iter().any(|a| a.code == issue.code && a.device == issue.device),
                "process" => j
                    .restart_requested_at
                    .get(&issue.device)
                    .is_some_and(|&at| latest_restart_xid_ms(health, issue.device).is_some_and(|latest| latest <= at)),
                _ => false,
            };
            if in_effect || (plan != "operator" && plans.iter().any(|(p, _)| *p == plan)) {
                continue;
            }
            plans.push((plan, issue.clone()));
        }
        plans
    }

    /// Maps each failing issue to its recovery and runs them, one at a time.
    pub async fn trigger_recovery(&self, health: &SystemHealth) -> Vec<RecoveryAction> {
        let _one_at_a_time = self.recovering.lock().await;
        let mut actions = Vec::new();
        for (plan, issue) in self.plan(health) {
            actions.push(self.run_plan(plan, &issue).await);
        }
        if !actions.is_empty() {
            let payload = json!({ "actions": actions.iter().map(action_json).collect::<Vec<_>>() });
            lock(&self.judgement).last_recovery = Some(payload.clone());
            self.events.emit("recovery", payload);
        }
        actions
    }

    async fn run_plan(&self, plan: &'static str, issue: &HealthIssue) -> RecoveryAction {
        let outcome = |kind, result, detail: Option<String>| RecoveryAction {
            kind,
            issue: Some(issue.code),
            device: issue.device,
            result,
            detail,
        };
        match plan {
            "memory" => match &self.parts.memory_recovery {
                Some(recovery) => self.counted(outcome, "memory", recovery.recover_from_pressure().await),
                None => outcome("memory", "skipped", Some("no memoryRecovery attached".to_owned())),
            },
            "device_lost" | "out_of_memory" => match &self.parts.gpu_recovery {
                Some(recovery) => {
                    let run = if plan == "device_lost" {
                        recovery.reinitialize_gpu().await
                    } else {
                        recovery.recover_from_oom().await
                    };
                    self.counted(outcome, plan, run)
                }
                None => outcome(plan, "skipped", Some("no gpuRecovery attached".to_owned())),
            },
            "process" => {
                let requested_at = unix_time_ms();
                let action = self.restart_process(issue.message.clone()).await.with_issue(issue);
                if action.result == "recovered" {
                    lock(&self.judgement).restart_requested_at.insert(issue.device, requested_at);
                }
                action
            }
            "pause_intake" => {
                lock(&self.judgement).paused_reasons.insert("thermal", issue.message.clone());
                self.record_recovery("pause_intake", "paused");
                outcome("pause_intake", "paused", Some("intake paused until the GPU cools".to_owned()))
            }
            _ => {
                let first = {
                    let mut j = lock(&self.judgement);
                    j.paused_reasons.insert("operator", "an operator must act".to_owned());
                    let known = j.operator_actions.iter().any(|a| a.code == issue.code && a.device == issue.device);
                    if !known {
                        j.operator_actions.push(OperatorAction {
                            code: issue.code,
                            device: issue.device,
                            action: issue.action,
                            message: issue.message.clone(),
                            since_ms: unix_time_ms(),
                        });
                    }
                    !known
                };
                if let Some(recovery) = &self.parts.memory_recovery {
                    recovery.pause();
                }
                if first {
                    self.incident(
                        "operator_action_required",
                        IncidentSeverity::Critical,
                        format!(
                            "{}: {}; this cannot be done from inside the service, intake is paused",
                            crate::policy::gpu_health::action_words(issue.action),
                            issue.message
                        ),
                        issue_json(issue),
                    )
                    .await;
                }
                self.record_recovery("operator", "paused");
                outcome("operator", "paused", Some(crate::policy::gpu_health::action_words(issue.action).to_owned()))
            }
        }
    }

    fn record_recovery(&self, kind: &str, result: &str) {
        *lock(&self.judgement).counters.recoveries.entry((kind.to_owned(), result.to_owned())).or_default() += 1;
    }

    fn counted(
        &self,
        outcome: impl Fn(&'static str, &'static str, Option<String>) -> RecoveryAction,
        kind: &'static str,
        run: Arc<RecoveryOutcome>,
    ) -> RecoveryAction {
        let result = run.result.as_str();
        self.record_recovery(kind, result);
        outcome(kind, result, run.error.as_ref().map(|e| format!("{}: {}", e.code, e.message)))
    }

    async fn restart_process(&self, reason: String) -> RecoveryAction {
        let Some(hook) = &self.parts.restart_process else {
            return RecoveryAction::skipped("process", "no restartProcess hook");
        };
        let mut run = self.interrupter.new_run("process");
        let step = run.hook_step("restart_process", Some(hook), None, self.options.step_timeout).await;
        let result = match &step {
            Ok(()) => RunResult::Recovered,
            Err(error) => error.run_result(),
        };
        self.record_recovery("process", result.as_str());
        let detail = step.err().map(|e| format!("{}: {}", e.code, e.message)).unwrap_or(reason);
        RecoveryAction { kind: "process", issue: None, device: None, result: result.as_str(), detail: Some(detail) }
    }

    /// An operator's request: runs regardless of the budget, one recovery at a time.
    pub async fn recover_system(&self, kind: RecoveryType) -> RecoveryAction {
        match kind {
            RecoveryType::Memory => {
                let _one = self.recovering.lock().await;
                match &self.parts.memory_recovery {
                    Some(r) => {
                        let run = r.recover_from_pressure().await;
                        self.record_recovery("memory", run.result.as_str());
                        action_from_run("memory", &run)
                    }
                    None => RecoveryAction::skipped("memory", "no memoryRecovery attached"),
                }
            }
            RecoveryType::Gpu => {
                let _one = self.recovering.lock().await;
                let Some(r) = &self.parts.gpu_recovery else {
                    return RecoveryAction::skipped("gpu", "no gpuRecovery attached");
                };
                // A lost device needs NVML re-opened; otherwise the allocator is what to clear.
                let lost = match &self.parts.gpu_monitor {
                    Some(m) => {
                        let m = m.clone();
                        tokio::task::spawn_blocking(move || {
                            m.check_gpu_health_with(GpuDetail::Memory).devices.iter().any(|d| d.sample.lost)
                        })
                        .await
                        .unwrap_or(false)
                    }
                    None => false,
                };
                let (kind, run) = if lost {
                    ("device_lost", r.reinitialize_gpu().await)
                } else {
                    ("out_of_memory", r.recover_from_oom().await)
                };
                self.record_recovery(kind, run.result.as_str());
                action_from_run(kind, &run)
            }
            RecoveryType::Process => {
                let _one = self.recovering.lock().await;
                self.restart_process("requested by an operator".to_owned()).await
            }
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
                    "checkpoint_failed",
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

    /// Starts the loop on the runtime `spawn` puts it on; idempotent.
    pub fn start(self: &Arc<Self>, spawn: impl FnOnce(LoopFuture) -> tokio::task::JoinHandle<()>) {
        let mut running = lock(&self.running);
        if running.is_some() {
            return;
        }
        let (stop, mut stopped) = watch::channel(false);
        let this = self.clone();
        let done = spawn(Box::pin(async move {
            loop {
                // The next check is timed from the end of this one: checks never overlap. A
                // turn under way finishes before the loop stops (its recovery interrupted).
                this.tick_unless_stopped(&mut stopped).await;
                if *stopped.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(this.options.interval) => {}
                    _ = stopped.changed() => return,
                }
            }
        }));
        *running = Some(Running { stop, done });
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
            return self.interrupt_recoveries();
        };
        let _ = stop.send(true);
        // Interrupted again until the loop ends: a recovery the turn starts after one
        // interrupt (it was checking health then) is caught by the next.
        loop {
            self.interrupt_recoveries();
            tokio::select! {
                _ = &mut done => return,
                _ = tokio::time::sleep(STOP_INTERRUPT_REPEAT) => {}
            }
        }
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

    /// The Prometheus text exposition of the last full check and the counters.
    pub fn metrics_text(&self) -> String {
        let health = self.last_full_health();
        let counters = self.counters();
        let (xid_totals, uuids) = match &self.parts.gpu_monitor {
            Some(gpu) => {
                (gpu.xid_totals(), gpu.session().known_devices().into_iter().map(|d| (d.index, d.uuid)).collect())
            }
            None => Default::default(),
        };
        metrics::render(&metrics::MetricsInput {
            health: health.as_ref(),
            counters: &counters,
            accepting_requests: self.accepting_requests(),
            xid_totals,
            uuids,
        })
    }

    pub fn status(&self) -> Value {
        let now = unix_time_ms();
        let accepting = self.accepting_requests();
        let mut j = lock(&self.judgement);
        let used = j.budget.used(now);
        json!({
            "state": j.state.as_str(),
            "running": lock(&self.running).is_some(),
            "accepting_requests": accepting,
            "paused_reasons": j.paused_reasons,
            "recovery_paused": self.parts.memory_recovery.as_ref().is_some_and(|r| r.pause_incoming()),
            "in_episode": j.hysteresis.in_episode(),
            "consecutive_failures": j.consecutive_failures,
            "last_check": j.last_health.as_ref().map(health_summary),
            "budget": { "max": j.budget.max, "window_ms": j.budget.window_ms, "used": used, "exhausted": used >= j.budget.max },
            "next_recovery_not_before": j.backoff.not_before_ms(),
            "operator_actions": j.operator_actions.iter().map(|a| json!({
                "code": a.code.as_str(), "device": a.device, "action": a.action.as_str(), "message": a.message, "since": a.since_ms,
            })).collect::<Vec<_>>(),
            "last_recovery": j.last_recovery,
            "last_checkpoint": j.counters.last_checkpoint_ms,
            "checks": j.counters.checks,
            "check_failures": j.counters.check_failures,
        })
    }
}

trait WithIssue {
    fn with_issue(self, issue: &HealthIssue) -> Self;
}

impl WithIssue for RecoveryAction {
    fn with_issue(mut self, issue: &HealthIssue) -> Self {
        self.issue = Some(issue.code);
        self.device = issue.device;
        self
    }
}

fn action_from_run(kind: &'static str, run: &RecoveryOutcome) -> RecoveryAction {
    RecoveryAction {
        kind,
        issue: None,
        device: None,
        result: run.result.as_str(),
        detail: run.error.as_ref().map(|e| format!("{}: {}", e.code, e.message)),
    }
}

pub fn action_json(a: &RecoveryAction) -> Value {
    json!({ "type": a.kind, "issue": a.issue.map(|c| c.as_str()), "device": a.device, "result": a.result, "detail": a.detail })
}

pub fn issue_json(issue: &HealthIssue) -> Value {
    json!({
        "code": issue.code.as_str(),
        "severity": issue.severity.as_str(),
        "device": issue.device,
        "message": issue.message,
        "action": issue.action.as_str(),
    })
}

/// The newest Xid event on `device` whose catalog entry asks for an application restart,
/// when the health carries Xid events (a full check does; issues passed in by hand do not).
fn latest_restart_xid_ms(health: &SystemHealth, device: Option<u32>) -> Option<f64> {
    let device = health.gpu.as_ref()?.devices.iter().find(|d| Some(d.sample.index) == device)?;
    device
        .verdict
        .xid_errors
        .iter()
        .filter(|e| crate::policy::xid_catalog::classify_xid(e.code).action == Action::RestartApp)
        .map(|e| e.timestamp_ms)
        .max_by(f64::total_cmp)
}

fn issues_json(issues: &[HealthIssue]) -> Value {
    json!({ "issues": issues.iter().map(issue_json).collect::<Vec<_>>() })
}

/// The small form of a health check that events and the status carry.
pub fn health_summary(health: &SystemHealth) -> Value {
    json!({
        "healthy": health.healthy,
        "check_type": health.check_type.as_str(),
        "timestamp": health.timestamp_ms,
        "duration_ms": health.duration_ms,
        "accepting_requests": health.accepting_requests,
        "issues": health.issues.iter().map(issue_json).collect::<Vec<_>>(),
    })
}
