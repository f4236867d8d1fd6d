//! Running recoveries: the loop's automatic one (gated by the planner's budget and backoff),
//! `triggerRecovery`'s and an operator's `recoverSystem`, one at a time, each counted for the
//! metrics. What to run is `planner`'s decision; this carries it out.

use super::episode::jitter;
use super::pauses;
use super::planner::{self, ActionKind, ActionResult, PlannedAction, PlannerState, Trigger};
use super::status::{self, action_json, issue_json};
use super::{lock, Judgement, OperatorAction, RecoveryAction, RecoveryType, Supervisor, SupervisorState, SystemHealth};
use crate::incident::{IncidentKind, IncidentSeverity};
use crate::policy::issues::{Action, HealthIssue, IssueCode};
use crate::recovery::engine::{RecoveryOutcome, RunResult};
use crate::sampling::gpu::GpuDetail;
use crate::sampling::unix_time_ms;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

impl Supervisor {
    /// The planner's view of the state, for `issues` of `health`.
    fn plan(&self, j: &Judgement, health: &SystemHealth, trigger: Trigger, now_ms: f64) -> Vec<PlannedAction> {
        let operator_actions: Vec<(IssueCode, Option<u32>)> =
            j.operator_actions.iter().map(|a| (a.code, a.device)).collect();
        let latest_restart_xid_ms = latest_restart_xids(health);
        let state = PlannerState {
            trigger,
            monitoring_unknown: j.state == SupervisorState::Unknown,
            restart_hook: self.parts.restart_process.is_some(),
            thermal_paused: j.paused_reasons.contains_key(pauses::THERMAL),
            operator_actions: &operator_actions,
            restart_requested_at: &j.restart_requested_at,
            latest_restart_xid_ms: &latest_restart_xid_ms,
            budget: &j.budget,
            backoff: &j.backoff,
            budget_exhausted_reported: j.budget_exhausted_reported,
        };
        planner::plan(&health.issues, &state, now_ms)
    }

    pub(super) async fn recover_automatically(&self, health: &SystemHealth) {
        let now = unix_time_ms();
        let (allowed, report_exhausted) = {
            let mut j = lock(&self.judgement);
            let planned = self.plan(&j, health, Trigger::Automatic, now);
            match planned.first() {
                Some(PlannedAction::TakeBudget) => (j.budget.try_take(now), false),
                Some(PlannedAction::BudgetExhausted { report }) => {
                    j.budget_exhausted_reported = true;
                    j.hold_intake(pauses::BUDGET, "the recovery budget is spent".to_owned());
                    (false, *report)
                }
                _ => (false, false),
            }
        };
        if report_exhausted {
            if let Some(recovery) = &self.parts.memory_recovery {
                recovery.pause();
            }
            self.incident(
                IncidentKind::RecoveryBudgetExhausted,
                IncidentSeverity::Critical,
                format!(
                    "{} recoveries in {} ms and the service is still unhealthy: automatic recovery stops and intake stays paused until an operator acts or health returns",
                    self.options.budget_max, self.options.budget_window_ms
                ),
                status::issues_json(&health.issues),
            )
            .await;
        }
        if !allowed {
            return;
        }
        let actions = self.trigger_recovery(health).await;
        let succeeded = !actions.is_empty() && actions.iter().all(|a| a.result.settles());
        let mut j = lock(&self.judgement);
        if succeeded {
            j.backoff.succeeded();
        } else {
            j.backoff.failed(now, jitter());
        }
    }

    /// Maps each failing issue to its recovery and runs them, one at a time.
    pub async fn trigger_recovery(&self, health: &SystemHealth) -> Vec<RecoveryAction> {
        let _one_at_a_time = self.recovering.lock().await;
        let planned = {
            let j = lock(&self.judgement);
            self.plan(&j, health, Trigger::Requested, unix_time_ms())
        };
        let mut actions = Vec::new();
        for planned in planned {
            if let PlannedAction::Recover { kind, issue } = planned {
                actions.push(self.run_recovery(kind, &issue).await);
            }
        }
        if !actions.is_empty() {
            let payload = json!({ "actions": actions.iter().map(action_json).collect::<Vec<_>>() });
            lock(&self.judgement).last_recovery = Some(payload.clone());
            self.events.emit("recovery", payload);
        }
        actions
    }

    async fn run_recovery(&self, kind: ActionKind, issue: &HealthIssue) -> RecoveryAction {
        let outcome = |kind, result, detail: Option<String>| RecoveryAction {
            kind,
            issue: Some(issue.code),
            device: issue.device,
            result,
            detail,
        };
        match kind {
            ActionKind::Memory => match &self.parts.memory_recovery {
                Some(recovery) => self.counted(outcome, kind, recovery.recover_from_pressure().await),
                None => outcome(kind, ActionResult::Skipped, Some("no memoryRecovery attached".to_owned())),
            },
            ActionKind::DeviceLost | ActionKind::OutOfMemory | ActionKind::Gpu => match &self.parts.gpu_recovery {
                Some(recovery) => {
                    let run = if kind == ActionKind::DeviceLost {
                        recovery.reinitialize_gpu().await
                    } else {
                        recovery.recover_from_oom().await
                    };
                    self.counted(outcome, kind, run)
                }
                None => outcome(kind, ActionResult::Skipped, Some("no gpuRecovery attached".to_owned())),
            },
            ActionKind::Process => {
                let requested_at = unix_time_ms();
                let action = self.restart_process(issue.message.clone()).await.with_issue(issue);
                if action.result == ActionResult::Recovered {
                    lock(&self.judgement).restart_requested_at.insert(issue.device, requested_at);
                }
                action
            }
            ActionKind::PauseIntake => {
                lock(&self.judgement).hold_intake(pauses::THERMAL, issue.message.clone());
                outcome(kind, ActionResult::Paused, Some("intake paused until the GPU cools".to_owned()))
            }
            ActionKind::Operator => {
                let first = {
                    let mut j = lock(&self.judgement);
                    j.hold_intake(pauses::OPERATOR, "an operator must act".to_owned());
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
                        IncidentKind::OperatorActionRequired,
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
                outcome(
                    kind,
                    ActionResult::Paused,
                    Some(crate::policy::gpu_health::action_words(issue.action).to_owned()),
                )
            }
        }
    }

    fn record_recovery(&self, kind: ActionKind, result: ActionResult) {
        *lock(&self.judgement).counters.recoveries.entry((kind, result)).or_default() += 1;
    }

    fn counted(
        &self,
        outcome: impl Fn(ActionKind, ActionResult, Option<String>) -> RecoveryAction,
        kind: ActionKind,
        run: Arc<RecoveryOutcome>,
    ) -> RecoveryAction {
        let result = ActionResult::from(run.result);
        self.record_recovery(kind, result);
        outcome(kind, result, run.error.as_ref().map(|e| format!("{}: {}", e.code, e.message)))
    }

    async fn restart_process(&self, reason: String) -> RecoveryAction {
        let Some(hook) = &self.parts.restart_process else {
            return status::skipped(ActionKind::Process, "no restartProcess hook");
        };
        let mut run = self.interrupter.new_run("process");
        let step = run.hook_step("restart_process", Some(hook), None, self.options.step_timeout).await;
        let result = match &step {
            Ok(()) => RunResult::Recovered,
            Err(error) => error.run_result(),
        };
        let result = ActionResult::from(result);
        self.record_recovery(ActionKind::Process, result);
        let detail = step.err().map(|e| format!("{}: {}", e.code, e.message)).unwrap_or(reason);
        RecoveryAction { kind: ActionKind::Process, issue: None, device: None, result, detail: Some(detail) }
    }

    /// An operator's request: runs regardless of the budget, one recovery at a time.
    pub async fn recover_system(&self, kind: RecoveryType) -> RecoveryAction {
        match kind {
            RecoveryType::Memory => {
                let _one = self.recovering.lock().await;
                match &self.parts.memory_recovery {
                    Some(r) => {
                        let run = r.recover_from_pressure().await;
                        self.record_recovery(ActionKind::Memory, run.result.into());
                        action_from_run(ActionKind::Memory, &run)
                    }
                    None => status::skipped(ActionKind::Memory, "no memoryRecovery attached"),
                }
            }
            RecoveryType::Gpu => {
                let _one = self.recovering.lock().await;
                let Some(r) = &self.parts.gpu_recovery else {
                    return status::skipped(ActionKind::Gpu, "no gpuRecovery attached");
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
                    (ActionKind::DeviceLost, r.reinitialize_gpu().await)
                } else {
                    (ActionKind::OutOfMemory, r.recover_from_oom().await)
                };
                // Counted as the operator asked for it, apart from the automatic ones.
                self.record_recovery(ActionKind::Gpu, run.result.into());
                action_from_run(kind, &run)
            }
            RecoveryType::Process => {
                let _one = self.recovering.lock().await;
                self.restart_process("requested by an operator".to_owned()).await
            }
        }
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

fn action_from_run(kind: ActionKind, run: &RecoveryOutcome) -> RecoveryAction {
    RecoveryAction {
        kind,
        issue: None,
        device: None,
        result: run.result.into(),
        detail: run.error.as_ref().map(|e| format!("{}: {}", e.code, e.message)),
    }
}

/// The newest Xid event per device whose catalog entry asks for an application restart,
/// when the health carries Xid events (a full check does; issues passed in by hand do not).
fn latest_restart_xids(health: &SystemHealth) -> HashMap<Option<u32>, f64> {
    let mut latest = HashMap::new();
    for device in health.gpu.iter().flat_map(|g| &g.devices) {
        let newest = device
            .verdict
            .xid_errors
            .iter()
            .filter(|e| crate::policy::xid_catalog::classify_xid(e.code).action == Action::RestartApp)
            .map(|e| e.timestamp_ms)
            .max_by(f64::total_cmp);
        if let Some(at) = newest {
            latest.insert(Some(device.sample.index), at);
        }
    }
    latest
}
