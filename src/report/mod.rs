//! The morning report: what the metrics history and the incident log of a state directory
//! say about a span of time. [`model`] builds one value from both; [`verdict`] sums it up
//! in a sentence; [`text`] renders it for a terminal and [`html`] as a self-contained page.
//! Reading takes no lock, so a running service's directory can be reported on.

pub mod clock;
#[cfg(test)]
pub mod fixture;
pub mod html;
pub mod model;
pub mod palette;
pub mod since;
pub mod svg;
pub mod text;
pub mod verdict;

use std::path::Path;

pub use model::{Report, ReportThresholds};

use crate::durable::{IncidentLog, ReadFilter, Result, ERR_NOT_FOUND};
use crate::history::{read_history, HistoryPolicy, HistoryReadout};

/// Where in a state directory the history and the incident log are (as the example
/// service lays it out).
pub const HISTORY_SUBDIR: &str = "history";
pub const INCIDENTS_SUBDIR: &str = "incidents";

/// What to report on.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRequest {
    pub since_ms: u64,
    pub until_ms: u64,
    pub thresholds: ReportThresholds,
}

/// Reads `state_dir/history` and `state_dir/incidents` without their locks and builds the
/// report. A missing part is a note in the report; a missing `state_dir` is `ERR_NOT_FOUND`.
pub fn read_report(state_dir: &Path, request: &ReportRequest) -> Result<Report> {
    // The zone every time of this report is shown in: read once, here.
    clock::read_zone();
    if !state_dir.is_dir() {
        return Err(crate::durable::DurableError::new(
            ERR_NOT_FOUND,
            format!("state directory {} does not exist", state_dir.display()),
        ));
    }
    let mut notes = Vec::new();
    let history_dir = state_dir.join(HISTORY_SUBDIR);
    let history = if history_dir.is_dir() {
        let read = read_history(&history_dir, request.since_ms, &HistoryPolicy::default())?;
        notes.extend(read.unreadable.iter().map(|what| format!("history file not read: {what}")));
        read
    } else {
        notes.push(format!("no metrics history in {} (the supervisor's historyDir)", history_dir.display()));
        HistoryReadout::default()
    };
    let incidents_dir = state_dir.join(INCIDENTS_SUBDIR);
    let (incidents, skipped_lines) = if incidents_dir.is_dir() {
        let filter = ReadFilter { since_ms: Some(request.since_ms), ..ReadFilter::default() };
        let read = IncidentLog::read_unlocked(&incidents_dir, &filter)?;
        (read.records, read.problems.len() as u64)
    } else {
        notes.push(format!("no incident log in {}", incidents_dir.display()));
        (Vec::new(), 0)
    };
    Ok(model::build(model::ReportInput {
        history: &history,
        incidents: &incidents,
        since_ms: request.since_ms,
        until_ms: request.until_ms,
        thresholds: request.thresholds,
        notes,
        skipped_incident_lines: skipped_lines,
    }))
}
