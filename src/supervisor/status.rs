//! What the supervisor shows: the JSON of its status, of recovery actions, of issues and of
//! health checks, and the readiness verdict with its reasons. Plain functions of the
//! supervisor's state, tested here.

use super::planner::{ActionKind, ActionResult};
use super::{RecoveryAction, SupervisorState, SystemHealth};
use crate::policy::issues::{HealthIssue, IssueCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub fn action_json(a: &RecoveryAction) -> Value {
    json!({
        "type": a.kind.as_str(),
        "issue": a.issue.map(|c| c.as_str()),
        "device": a.device,
        "result": a.result.as_str(),
        "detail": a.detail,
    })
}

/// An issue as events and the status show it: the one `HealthIssue` shape (`crate::shapes`).
pub fn issue_json(issue: &HealthIssue) -> Value {
    crate::shapes::to_json(issue)
}

pub fn issues_json(issues: &[HealthIssue]) -> Value {
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

/// What readiness is judged from.
pub struct ReadinessInput<'a> {
    pub now_ms: f64,
    pub state: SupervisorState,
    pub running: bool,
    /// When the loop started (the first check's reference), if it runs.
    pub started_at_ms: Option<f64>,
    pub last_success_at_ms: Option<f64>,
    pub stale_after_ms: f64,
    /// Why the last check failed, if it did.
    pub last_failure: Option<&'a str>,
    pub last_full_health: Option<&'a SystemHealth>,
    pub paused_reasons: &'a BTreeMap<&'static str, String>,
    pub recovery_paused: bool,
}

/// Why the service should not get traffic, the real cause first: devices lost or missing,
/// then health nobody has confirmed lately (a hung or failing check), then intake pauses.
/// Empty when ready.
pub fn not_ready_reasons(input: &ReadinessInput) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(health) = input.last_full_health {
        for issue in &health.issues {
            match (issue.code, issue.device) {
                (IssueCode::GpuLost, Some(device)) => reasons.push(format!("GPU {device} lost")),
                (IssueCode::GpuLost, None) | (IssueCode::GpuMissing, _) => reasons.push(issue.message.clone()),
                _ => {}
            }
        }
    }
    // Health counts as confirmed from the loop's start until the first check is due to end.
    let confirmed_at = input.last_success_at_ms.or(input.started_at_ms);
    let stale = input.running && confirmed_at.is_some_and(|at| input.now_ms - at > input.stale_after_ms);
    if input.state == SupervisorState::Unknown || stale {
        let since = match input.last_success_at_ms {
            Some(at) => format!("no successful check for {} s", ((input.now_ms - at) / 1000.0).floor().max(0.0)),
            None => "no successful check yet".to_owned(),
        };
        reasons.push(match input.last_failure {
            Some(failure) => format!("{since} ({failure})"),
            None => since,
        });
    }
    reasons.extend(input.paused_reasons.iter().map(|(key, why)| format!("{key}: {why}")));
    if input.recovery_paused {
        reasons.push("memory: a memory recovery holds intake".to_owned());
    }
    reasons
}

/// An action that could not run for want of what it needs (a hook, a recovery attached).
pub fn skipped(kind: ActionKind, detail: &str) -> RecoveryAction {
    RecoveryAction { kind, issue: None, device: None, result: ActionResult::Skipped, detail: Some(detail.to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::CheckType;

    fn health(issues: Vec<HealthIssue>) -> SystemHealth {
        SystemHealth {
            healthy: false,
            check_type: CheckType::Full,
            timestamp_ms: 0.0,
            duration_ms: 1.0,
            memory: None,
            gpu: None,
            issues,
            accepting_requests: true,
        }
    }

    fn input<'a>(paused: &'a BTreeMap<&'static str, String>) -> ReadinessInput<'a> {
        ReadinessInput {
            now_ms: 100_000.0,
            state: SupervisorState::Healthy,
            running: true,
            started_at_ms: Some(0.0),
            last_success_at_ms: Some(95_000.0),
            stale_after_ms: 30_000.0,
            last_failure: None,
            last_full_health: None,
            paused_reasons: paused,
            recovery_paused: false,
        }
    }

    #[test]
    fn ready_when_health_is_fresh_and_nothing_holds_intake() {
        let paused = BTreeMap::new();
        assert!(not_ready_reasons(&input(&paused)).is_empty());
        // Stopped: nobody checks, so staleness says nothing.
        let stopped = ReadinessInput { running: false, last_success_at_ms: Some(0.0), ..input(&paused) };
        assert!(not_ready_reasons(&stopped).is_empty());
    }

    #[test]
    fn the_real_cause_comes_first() {
        let paused = BTreeMap::from([("budget", "the recovery budget is spent".to_owned())]);
        let lost = health(vec![
            HealthIssue::new(IssueCode::GpuMemoryPressure, Some(0), "memory".into()),
            HealthIssue::new(IssueCode::GpuLost, Some(1), "GPU 1 fell off the bus".into()),
        ]);
        let reasons = not_ready_reasons(&ReadinessInput {
            last_full_health: Some(&lost),
            last_success_at_ms: Some(40_000.0),
            recovery_paused: true,
            ..input(&paused)
        });
        assert_eq!(
            reasons,
            vec![
                "GPU 1 lost".to_owned(),
                "no successful check for 60 s".to_owned(),
                "budget: the recovery budget is spent".to_owned(),
                "memory: a memory recovery holds intake".to_owned(),
            ]
        );
    }

    #[test]
    fn a_timed_out_check_makes_the_service_not_ready_at_once() {
        let paused = BTreeMap::new();
        let reasons = not_ready_reasons(&ReadinessInput {
            state: SupervisorState::Unknown,
            last_failure: Some("health check did not finish within 10000 ms"),
            ..input(&paused)
        });
        assert_eq!(reasons, vec!["no successful check for 5 s (health check did not finish within 10000 ms)"]);
        // Never a success, and the loop started too long ago.
        let reasons = not_ready_reasons(&ReadinessInput { last_success_at_ms: None, ..input(&paused) });
        assert_eq!(reasons, vec!["no successful check yet"]);
        // Just started: the first check has its time.
        let fresh = ReadinessInput { last_success_at_ms: None, started_at_ms: Some(90_000.0), ..input(&paused) };
        assert!(not_ready_reasons(&fresh).is_empty());
    }

    #[test]
    fn actions_serialize_to_the_contract_strings() {
        let action = RecoveryAction {
            kind: ActionKind::DeviceLost,
            issue: Some(IssueCode::GpuLost),
            device: Some(1),
            result: ActionResult::NotRecovered,
            detail: None,
        };
        assert_eq!(
            action_json(&action),
            json!({ "type": "device_lost", "issue": "GPU_LOST", "device": 1, "result": "not_recovered", "detail": null })
        );
        assert_eq!(action_json(&skipped(ActionKind::Gpu, "no gpuRecovery attached"))["result"], "skipped");
    }
}
