//! The supervisor's decisions, apart from doing them: which recovery each failing issue calls
//! for, which pauses are already in effect, whether the budget and the backoff let an
//! automatic recovery run, and which issues are severe enough to skip hysteresis. Issues and
//! state in, actions out; no clock, no I/O, so every rule is tested here.

use super::episode::{Backoff, RecoveryBudget};
use crate::policy::issues::{Action, HealthIssue, IssueCode, Severity};
use std::collections::HashMap;

/// What the supervisor does about an issue. Serialized as today's strings (`type` of a
/// recovery action, and the `type` label of `hpc_health_recoveries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    /// Memory pressure: `MemoryRecovery.recoverFromPressure`.
    Memory,
    /// Allocator fragmentation (or an operator's `'gpu'` on a device that answers): `recoverFromOOM`.
    OutOfMemory,
    /// A device fell off the bus: `reinitializeGpu`.
    DeviceLost,
    /// The `restartProcess` hook.
    Process,
    /// Intake held until a hot GPU cools.
    PauseIntake,
    /// Only an operator can act (reset a GPU, reboot the node); intake held.
    Operator,
    /// An operator's `'gpu'` request with no `gpuRecovery` to run it.
    Gpu,
}

impl ActionKind {
    /// The kinds that run a recovery: the `type` label values of `hpc_health_recoveries_total`
    /// (`Gpu` is an operator's `recoverSystem('gpu')`, whichever GPU recovery it ran).
    pub const RECOVERIES: [ActionKind; 5] =
        [ActionKind::Memory, ActionKind::OutOfMemory, ActionKind::DeviceLost, ActionKind::Gpu, ActionKind::Process];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Memory => "memory",
            ActionKind::OutOfMemory => "out_of_memory",
            ActionKind::DeviceLost => "device_lost",
            ActionKind::Process => "process",
            ActionKind::PauseIntake => "pause_intake",
            ActionKind::Operator => "operator",
            ActionKind::Gpu => "gpu",
        }
    }
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionResult {
    Recovered,
    NotRecovered,
    Failed,
    Interrupted,
    /// Intake paused (thermal, operator).
    Paused,
    /// What it needs (a hook, a recovery attached) is missing.
    Skipped,
}

impl ActionResult {
    /// How a recovery that ran can end: the `result` label values of `hpc_health_recoveries_total`.
    pub const OF_RUNS: [ActionResult; 4] =
        [ActionResult::Recovered, ActionResult::NotRecovered, ActionResult::Failed, ActionResult::Interrupted];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionResult::Recovered => "recovered",
            ActionResult::NotRecovered => "not_recovered",
            ActionResult::Failed => "failed",
            ActionResult::Interrupted => "interrupted",
            ActionResult::Paused => "paused",
            ActionResult::Skipped => "skipped",
        }
    }

    /// Whether an attempt ending so resets the backoff (nothing left to retry).
    pub fn settles(self) -> bool {
        matches!(self, ActionResult::Recovered | ActionResult::Paused | ActionResult::Skipped)
    }
}

impl From<crate::recovery::engine::RunResult> for ActionResult {
    fn from(result: crate::recovery::engine::RunResult) -> Self {
        use crate::recovery::engine::RunResult;
        match result {
            RunResult::Recovered => ActionResult::Recovered,
            RunResult::NotRecovered => ActionResult::NotRecovered,
            RunResult::Failed => ActionResult::Failed,
            RunResult::Interrupted => ActionResult::Interrupted,
        }
    }
}

/// Who asked for the recoveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The loop, in an episode: the budget and the backoff apply.
    Automatic,
    /// `triggerRecovery` from JavaScript: no budget, no backoff.
    Requested,
}

/// One decision of the planner, in the order to carry them out.
#[derive(Debug, Clone, PartialEq)]
pub enum PlannedAction {
    /// Spend one recovery from the budget (first, before the recoveries it pays for).
    TakeBudget,
    /// Run the recovery `kind` for `issue`.
    Recover { kind: ActionKind, issue: HealthIssue },
    /// The budget is spent: hold intake; `report` the first time in the episode.
    BudgetExhausted { report: bool },
    /// A failed attempt's backoff has not run out: nothing runs before `not_before_ms`.
    WaitBackoff { not_before_ms: f64 },
}

/// What the planner needs to know besides the issues.
pub struct PlannerState<'a> {
    pub trigger: Trigger,
    /// Monitoring keeps failing: nothing destructive is done on a guess.
    pub monitoring_unknown: bool,
    pub restart_hook: bool,
    /// Intake already held for a hot GPU.
    pub thermal_paused: bool,
    /// Operator actions already raised, by (code, device).
    pub operator_actions: &'a [(IssueCode, Option<u32>)],
    /// When `restartProcess` last succeeded for an issue of each device.
    pub restart_requested_at: &'a HashMap<Option<u32>, f64>,
    /// The newest Xid event per device whose catalog entry asks for a restart.
    pub latest_restart_xid_ms: &'a HashMap<Option<u32>, f64>,
    pub budget: &'a RecoveryBudget,
    pub backoff: &'a Backoff,
    pub budget_exhausted_reported: bool,
}

/// The recovery a failing issue calls for, if any.
pub fn recovery_for(issue: &HealthIssue, restart_hook: bool) -> Option<ActionKind> {
    if issue.severity != Severity::Fail {
        return None;
    }
    Some(match (issue.code, issue.action) {
        (IssueCode::SystemMemoryPressure | IssueCode::GpuMemoryPressure, _) => ActionKind::Memory,
        (IssueCode::GpuLost, _) => ActionKind::DeviceLost,
        (IssueCode::FragmentationHigh, _) => ActionKind::OutOfMemory,
        // Less work lets a hot GPU cool; nothing else in reach of the service helps.
        (IssueCode::TemperatureHigh, _) => ActionKind::PauseIntake,
        // Without a hook, restarting the application is an operator's job.
        (_, Action::RestartApp) if restart_hook => ActionKind::Process,
        (_, Action::RestartApp | Action::ResetGpu | Action::RebootNode) => ActionKind::Operator,
        _ => return None,
    })
}

/// An issue that starts an episode at once, without waiting for `hysteresis.unhealthyAfter`
/// checks: a device NVML reports lost, or an Xid whose catalog action is a GPU reset or a
/// node reboot. Such faults do not flap; waiting only delays draining the node.
pub fn bypasses_hysteresis(issue: &HealthIssue) -> bool {
    issue.severity == Severity::Fail
        && (issue.code == IssueCode::GpuLost
            || (issue.code == IssueCode::Xid && matches!(issue.action, Action::ResetGpu | Action::RebootNode)))
}

/// What each failing issue calls for, once per kind (every operator issue on its own),
/// leaving out pauses already in effect and a restart already made for the newest Xid
/// asking for it; for the loop, gated by the backoff and the budget.
pub fn plan(issues: &[HealthIssue], state: &PlannerState, now_ms: f64) -> Vec<PlannedAction> {
    let mut recoveries: Vec<PlannedAction> = Vec::new();
    for issue in issues {
        let Some(kind) = recovery_for(issue, state.restart_hook) else { continue };
        let in_effect = match kind {
            ActionKind::PauseIntake => state.thermal_paused,
            ActionKind::Operator => state.operator_actions.contains(&(issue.code, issue.device)),
            // The Xid that asked for the restart stays in the window afterwards, and must not
            // ask again: only a newer one may.
            ActionKind::Process => state
                .restart_requested_at
                .get(&issue.device)
                .is_some_and(|&at| state.latest_restart_xid_ms.get(&issue.device).is_some_and(|&latest| latest <= at)),
            _ => false,
        };
        let planned_already = kind != ActionKind::Operator
            && recoveries.iter().any(|p| matches!(p, PlannedAction::Recover { kind: k, .. } if *k == kind));
        if in_effect || planned_already {
            continue;
        }
        recoveries.push(PlannedAction::Recover { kind, issue: issue.clone() });
    }
    if state.trigger == Trigger::Requested {
        return recoveries;
    }
    // Nothing to do (or only pauses already in effect) takes nothing from the budget.
    if state.monitoring_unknown || recoveries.is_empty() {
        return Vec::new();
    }
    if !state.backoff.ready(now_ms) {
        return vec![PlannedAction::WaitBackoff { not_before_ms: state.backoff.not_before_ms().unwrap_or(now_ms) }];
    }
    if state.budget.used_at(now_ms) >= state.budget.max {
        return vec![PlannedAction::BudgetExhausted { report: !state.budget_exhausted_reported }];
    }
    let mut planned = vec![PlannedAction::TakeBudget];
    planned.extend(recoveries);
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(code: IssueCode, device: Option<u32>) -> HealthIssue {
        HealthIssue::new(code, device, format!("{code:?}"))
    }

    fn xid(device: u32, action: Action) -> HealthIssue {
        HealthIssue {
            code: IssueCode::Xid,
            severity: Severity::Fail,
            device: Some(device),
            message: "Xid".into(),
            action,
            eta_ms: None,
        }
    }

    struct Fixture {
        trigger: Trigger,
        monitoring_unknown: bool,
        restart_hook: bool,
        thermal_paused: bool,
        operator_actions: Vec<(IssueCode, Option<u32>)>,
        restart_requested_at: HashMap<Option<u32>, f64>,
        latest_restart_xid_ms: HashMap<Option<u32>, f64>,
        budget: RecoveryBudget,
        backoff: Backoff,
        budget_exhausted_reported: bool,
    }

    impl Fixture {
        fn new(trigger: Trigger) -> Self {
            Fixture {
                trigger,
                monitoring_unknown: false,
                restart_hook: false,
                thermal_paused: false,
                operator_actions: Vec::new(),
                restart_requested_at: HashMap::new(),
                latest_restart_xid_ms: HashMap::new(),
                budget: RecoveryBudget::new(3, 600_000.0),
                backoff: Backoff::default(),
                budget_exhausted_reported: false,
            }
        }

        fn plan(&self, issues: &[HealthIssue], now_ms: f64) -> Vec<PlannedAction> {
            let state = PlannerState {
                trigger: self.trigger,
                monitoring_unknown: self.monitoring_unknown,
                restart_hook: self.restart_hook,
                thermal_paused: self.thermal_paused,
                operator_actions: &self.operator_actions,
                restart_requested_at: &self.restart_requested_at,
                latest_restart_xid_ms: &self.latest_restart_xid_ms,
                budget: &self.budget,
                backoff: &self.backoff,
                budget_exhausted_reported: self.budget_exhausted_reported,
            };
            plan(issues, &state, now_ms)
        }

        fn kinds(&self, issues: &[HealthIssue]) -> Vec<ActionKind> {
            self.plan(issues, 0.0)
                .into_iter()
                .filter_map(|p| match p {
                    PlannedAction::Recover { kind, .. } => Some(kind),
                    _ => None,
                })
                .collect()
        }
    }

    /// The README's table: each failing issue and the recovery it calls for.
    #[test]
    fn maps_each_failing_issue_to_its_recovery() {
        let f = Fixture::new(Trigger::Requested);
        let rows: Vec<(HealthIssue, Option<ActionKind>)> = vec![
            (issue(IssueCode::SystemMemoryPressure, None), Some(ActionKind::Memory)),
            (issue(IssueCode::GpuMemoryPressure, Some(0)), Some(ActionKind::Memory)),
            (issue(IssueCode::GpuLost, Some(1)), Some(ActionKind::DeviceLost)),
            (issue(IssueCode::FragmentationHigh, Some(0)), Some(ActionKind::OutOfMemory)),
            (issue(IssueCode::TemperatureHigh, Some(0)), Some(ActionKind::PauseIntake)),
            (xid(0, Action::RestartApp), Some(ActionKind::Operator)),
            (xid(0, Action::ResetGpu), Some(ActionKind::Operator)),
            (xid(0, Action::RebootNode), Some(ActionKind::Operator)),
            (issue(IssueCode::EccUncorrected, Some(0)), Some(ActionKind::Operator)),
            (issue(IssueCode::RowRemapFailed, Some(0)), Some(ActionKind::Operator)),
            (issue(IssueCode::GpuMissing, None), Some(ActionKind::Operator)),
            (xid(0, Action::None), None),
        ];
        for (issue, expected) in rows {
            assert_eq!(f.kinds(std::slice::from_ref(&issue)), expected.into_iter().collect::<Vec<_>>(), "{issue:?}");
        }
        // With a restartProcess hook, an Xid asking for a restart restarts the process.
        let mut hooked = Fixture::new(Trigger::Requested);
        hooked.restart_hook = true;
        assert_eq!(hooked.kinds(&[xid(0, Action::RestartApp)]), vec![ActionKind::Process]);
        assert_eq!(hooked.kinds(&[xid(0, Action::ResetGpu)]), vec![ActionKind::Operator]);
        // Warnings call for nothing.
        let mut warn = issue(IssueCode::GpuMemoryPressure, Some(0));
        warn.severity = Severity::Warn;
        assert!(f.kinds(&[warn]).is_empty());
    }

    #[test]
    fn one_recovery_per_kind_but_every_operator_action_on_its_own() {
        let f = Fixture::new(Trigger::Requested);
        let issues = [
            issue(IssueCode::GpuMemoryPressure, Some(0)),
            issue(IssueCode::SystemMemoryPressure, None),
            xid(0, Action::ResetGpu),
            xid(1, Action::RebootNode),
            issue(IssueCode::GpuLost, Some(2)),
            issue(IssueCode::GpuLost, Some(3)),
        ];
        assert_eq!(
            f.kinds(&issues),
            vec![ActionKind::Memory, ActionKind::Operator, ActionKind::Operator, ActionKind::DeviceLost]
        );
        let PlannedAction::Recover { issue, .. } = &f.plan(&issues, 0.0)[0] else { panic!() };
        assert_eq!(issue.device, Some(0), "the first issue of a kind is the one acted on");
    }

    #[test]
    fn pauses_and_operator_actions_already_in_effect_are_not_planned_again() {
        let mut f = Fixture::new(Trigger::Requested);
        f.thermal_paused = true;
        f.operator_actions = vec![(IssueCode::Xid, Some(0))];
        let issues = [issue(IssueCode::TemperatureHigh, Some(0)), xid(0, Action::ResetGpu), xid(1, Action::ResetGpu)];
        let planned = f.plan(&issues, 0.0);
        assert_eq!(planned.len(), 1);
        assert!(
            matches!(&planned[0], PlannedAction::Recover { kind: ActionKind::Operator, issue } if issue.device == Some(1))
        );
    }

    #[test]
    fn a_restart_runs_once_per_xid_event() {
        let mut f = Fixture::new(Trigger::Requested);
        f.restart_hook = true;
        let issues = [xid(0, Action::RestartApp)];
        f.latest_restart_xid_ms.insert(Some(0), 1_000.0);
        assert_eq!(f.kinds(&issues), vec![ActionKind::Process], "never restarted yet");
        f.restart_requested_at.insert(Some(0), 1_500.0);
        assert!(f.kinds(&issues).is_empty(), "the Xid that asked was answered");
        f.latest_restart_xid_ms.insert(Some(0), 2_000.0);
        assert_eq!(f.kinds(&issues), vec![ActionKind::Process], "a newer Xid asks again");
        // Another device's restart does not count for this one.
        f.restart_requested_at = HashMap::from([(Some(1), 5_000.0)]);
        assert_eq!(f.kinds(&issues), vec![ActionKind::Process]);
        // Without the Xid's time (issues passed in by hand), a restart is planned.
        f.restart_requested_at = HashMap::from([(Some(0), 5_000.0)]);
        f.latest_restart_xid_ms.clear();
        assert_eq!(f.kinds(&issues), vec![ActionKind::Process]);
    }

    #[test]
    fn temperature_pauses_intake_once() {
        let mut f = Fixture::new(Trigger::Automatic);
        let hot = [issue(IssueCode::TemperatureHigh, Some(0))];
        assert!(matches!(
            &f.plan(&hot, 0.0)[..],
            [PlannedAction::TakeBudget, PlannedAction::Recover { kind: ActionKind::PauseIntake, .. }]
        ));
        f.thermal_paused = true;
        assert!(f.plan(&hot, 0.0).is_empty(), "a pause in effect takes nothing from the budget");
    }

    #[test]
    fn automatic_recoveries_spend_the_budget_and_report_its_exhaustion_once() {
        let mut f = Fixture::new(Trigger::Automatic);
        let issues = [issue(IssueCode::GpuMemoryPressure, Some(0))];
        assert!(matches!(
            &f.plan(&issues, 0.0)[..],
            [PlannedAction::TakeBudget, PlannedAction::Recover { kind: ActionKind::Memory, .. }]
        ));
        for at in [0.0, 1.0, 2.0] {
            assert!(f.budget.try_take(at));
        }
        assert_eq!(f.plan(&issues, 3.0), vec![PlannedAction::BudgetExhausted { report: true }]);
        f.budget_exhausted_reported = true;
        assert_eq!(f.plan(&issues, 3.0), vec![PlannedAction::BudgetExhausted { report: false }]);
        // The window slides: the first recovery leaves it and one more may run.
        assert_eq!(f.plan(&issues, 600_000.0)[0], PlannedAction::TakeBudget);
        // An operator's request ignores the budget.
        f.trigger = Trigger::Requested;
        assert_eq!(f.kinds(&issues), vec![ActionKind::Memory]);
    }

    #[test]
    fn backoff_defers_automatic_recoveries_only() {
        let mut f = Fixture::new(Trigger::Automatic);
        f.backoff.failed(10_000.0, 0.0);
        let issues = [issue(IssueCode::GpuLost, Some(0))];
        assert_eq!(f.plan(&issues, 10_500.0), vec![PlannedAction::WaitBackoff { not_before_ms: 11_000.0 }]);
        assert_eq!(f.plan(&issues, 11_000.0)[0], PlannedAction::TakeBudget);
        f.trigger = Trigger::Requested;
        assert_eq!(f.kinds(&issues), vec![ActionKind::DeviceLost]);
    }

    #[test]
    fn nothing_destructive_while_monitoring_is_unknown() {
        let mut f = Fixture::new(Trigger::Automatic);
        f.monitoring_unknown = true;
        assert!(f.plan(&[issue(IssueCode::GpuLost, Some(0))], 0.0).is_empty());
        // Nothing to do takes nothing from the budget either.
        f.monitoring_unknown = false;
        assert!(f.plan(&[xid(0, Action::None)], 0.0).is_empty());
    }

    #[test]
    fn lost_devices_and_severe_xids_skip_hysteresis() {
        assert!(bypasses_hysteresis(&issue(IssueCode::GpuLost, Some(1))));
        assert!(bypasses_hysteresis(&xid(0, Action::RebootNode)));
        assert!(bypasses_hysteresis(&xid(0, Action::ResetGpu)));
        assert!(!bypasses_hysteresis(&xid(0, Action::RestartApp)));
        assert!(!bypasses_hysteresis(&issue(IssueCode::GpuMemoryPressure, Some(0))));
        assert!(!bypasses_hysteresis(&issue(IssueCode::TemperatureHigh, Some(0))));
        let mut warn = xid(0, Action::ResetGpu);
        warn.severity = Severity::Warn;
        assert!(!bypasses_hysteresis(&warn));
    }

    #[test]
    fn kinds_and_results_keep_their_strings() {
        let kinds = [
            ActionKind::Memory,
            ActionKind::OutOfMemory,
            ActionKind::DeviceLost,
            ActionKind::Process,
            ActionKind::PauseIntake,
            ActionKind::Operator,
            ActionKind::Gpu,
        ];
        assert_eq!(
            kinds.map(ActionKind::as_str),
            ["memory", "out_of_memory", "device_lost", "process", "pause_intake", "operator", "gpu"]
        );
        let results = [
            ActionResult::Recovered,
            ActionResult::NotRecovered,
            ActionResult::Failed,
            ActionResult::Interrupted,
            ActionResult::Paused,
            ActionResult::Skipped,
        ];
        assert_eq!(
            results.map(ActionResult::as_str),
            ["recovered", "not_recovered", "failed", "interrupted", "paused", "skipped"]
        );
        assert_eq!(results.map(ActionResult::settles), [true, false, false, false, true, true]);
    }
}
