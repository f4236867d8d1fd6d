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
