//! Incidents: what the package writes down about what happened (recoveries, pressure
//! warnings, GPU errors, checkpoint events, monitoring errors). Producers write to a sink;
//! the durable `IncidentLog` is the sink users attach.

use serde_json::Value;

/// How serious an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IncidentSeverity {
    Info,
    Warn,
    Error,
    Critical,
}

impl IncidentSeverity {
    pub const ALL: [IncidentSeverity; 4] =
        [IncidentSeverity::Info, IncidentSeverity::Warn, IncidentSeverity::Error, IncidentSeverity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentSeverity::Info => "info",
            IncidentSeverity::Warn => "warn",
            IncidentSeverity::Error => "error",
            IncidentSeverity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One incident to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// A short machine-readable kind, e.g. `recovery_started`, `memory_pressure`.
    pub kind: String,
    pub severity: IncidentSeverity,
    pub message: String,
    /// Anything structured; JSON.
    pub details: Value,
}

/// Where recorded incidents go. `record` returns once the incident is as durable as the
/// sink promises (the `IncidentLog`: on disk), with the sequence number it was given.
pub trait IncidentSink: Send + Sync {
    fn record(&self, incident: Incident) -> Result<u64, String>;
}

/// The kinds of incident this package writes (users may record others through the log).
/// Metrics count these, each from 0, so the set is fixed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IncidentKind {
    HealthUnhealthy,
    HealthRecovered,
    MonitoringError,
    MemoryPressure,
    GpuIssue,
    RecoveryBudgetExhausted,
    OperatorActionRequired,
    RecoveryStarted,
    RecoveryFinished,
    CheckpointCreated,
    CheckpointRestored,
    CheckpointFailed,
    CheckpointCorrupt,
    JournalCompactionFailed,
    JournalRepaired,
    HistoryRepaired,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 16] = [
        IncidentKind::HealthUnhealthy,
        IncidentKind::HealthRecovered,
        IncidentKind::MonitoringError,
        IncidentKind::MemoryPressure,
        IncidentKind::GpuIssue,
        IncidentKind::RecoveryBudgetExhausted,
        IncidentKind::OperatorActionRequired,
        IncidentKind::RecoveryStarted,
        IncidentKind::RecoveryFinished,
        IncidentKind::CheckpointCreated,
        IncidentKind::CheckpointRestored,
        IncidentKind::CheckpointFailed,
        IncidentKind::CheckpointCorrupt,
        IncidentKind::JournalCompactionFailed,
        IncidentKind::JournalRepaired,
        IncidentKind::HistoryRepaired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::HealthUnhealthy => "health_unhealthy",
            IncidentKind::HealthRecovered => "health_recovered",
            IncidentKind::MonitoringError => "monitoring_error",
            IncidentKind::MemoryPressure => "memory_pressure",
            IncidentKind::GpuIssue => "gpu_issue",
            IncidentKind::RecoveryBudgetExhausted => "recovery_budget_exhausted",
            IncidentKind::OperatorActionRequired => "operator_action_required",
            IncidentKind::RecoveryStarted => "recovery_started",
            IncidentKind::RecoveryFinished => "recovery_finished",
            IncidentKind::CheckpointCreated => "checkpoint_created",
            IncidentKind::CheckpointRestored => "checkpoint_restored",
            IncidentKind::CheckpointFailed => "checkpoint_failed",
            IncidentKind::CheckpointCorrupt => "checkpoint_corrupt",
            IncidentKind::JournalCompactionFailed => "journal_compaction_failed",
            IncidentKind::JournalRepaired => "journal_repaired",
            IncidentKind::HistoryRepaired => "history_repaired",
        }
    }
}

impl Incident {
    pub fn new(kind: IncidentKind, severity: IncidentSeverity, message: String, details: Value) -> Self {
        Incident { kind: kind.as_str().to_owned(), severity, message, details }
    }
}

/// How many incidents of each kind a producer raised (whether or not a log was attached to
/// record them), for the metrics.
#[derive(Debug, Default)]
pub struct IncidentCounts(std::sync::Mutex<std::collections::BTreeMap<IncidentKind, u64>>);

impl IncidentCounts {
    pub fn add(&self, kind: IncidentKind) {
        *crate::sync::lock(&self.0).entry(kind).or_default() += 1;
    }

    pub fn snapshot(&self) -> std::collections::BTreeMap<IncidentKind, u64> {
        crate::sync::lock(&self.0).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_and_counted_by_kind() {
        let names: std::collections::BTreeSet<&str> = IncidentKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), IncidentKind::ALL.len());
        let counts = IncidentCounts::default();
        counts.add(IncidentKind::RecoveryStarted);
        counts.add(IncidentKind::RecoveryStarted);
        assert_eq!(counts.snapshot().into_iter().collect::<Vec<_>>(), vec![(IncidentKind::RecoveryStarted, 2)]);
    }
}
