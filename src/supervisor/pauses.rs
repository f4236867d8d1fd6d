//! Why the supervisor holds intake: the keys of `status().paused_reasons` and the `reason`
//! label of `hpc_health_intake_pauses_total`. A pause is counted when it begins, not when a
//! later check renews it, and never as a recovery.

/// A GPU too hot: intake waits until it cools.
pub const THERMAL: &str = "thermal";
/// Only an operator can fix what failed (reset a GPU, reboot the node).
pub const OPERATOR: &str = "operator";
/// The recovery budget is spent and the service is still unhealthy.
pub const BUDGET: &str = "budget";
/// Memory is projected full within the forecast horizon (`preemptivePause`).
pub const FORECAST: &str = "forecast";

pub const ALL: [&str; 4] = [THERMAL, OPERATOR, BUDGET, FORECAST];

impl super::Judgement {
    /// Holds intake for `reason`, counting the pause if it begins now.
    pub(super) fn hold_intake(&mut self, reason: &'static str, why: String) {
        debug_assert!(ALL.contains(&reason), "{reason}");
        if self.paused_reasons.insert(reason, why).is_none() {
            *self.counters.intake_pauses.entry(reason).or_default() += 1;
        }
    }

    /// An episode is over: every pause held for it goes (a forecast that still stands holds
    /// intake again with its next sample), and so do the operator actions it asked for.
    pub(super) fn release_episode_pauses(&mut self) -> std::collections::BTreeMap<&'static str, String> {
        self.budget_exhausted_reported = false;
        self.operator_actions.clear();
        std::mem::take(&mut self.paused_reasons)
    }
}
