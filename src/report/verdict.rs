//! The verdict: the report's first line, one sentence an operator reads at 8 am. Each part
//! comes from one source: recoveries, checkpoints and the journal from the incident log;
//! lost GPUs, pauses and unhealthy time from the history.

use super::clock::{duration, LocalTime};
use super::model::{GpuLostSpan, RecoveryRun, Span, StateSpan, Status, Verdict};
use crate::durable::IncidentRecord;
use crate::incident::{IncidentKind, IncidentSeverity};

/// Lost-GPU spans named one by one; more are summed up in one part.
const MAX_LOSSES_NAMED: usize = 3;

/// What the verdict is judged from.
pub struct Facts<'a> {
    pub recoveries: &'a [RecoveryRun],
    pub gpus_lost: Vec<GpuLostSpan>,
    pub intake_paused: &'a [Span],
    pub state_band: &'a [StateSpan],
    pub incidents: &'a [IncidentRecord],
}

/// `journal_repaired` incidents whose problem is of `kind` (`problem_json`'s `kind`).
fn journal_repairs(incidents: &[IncidentRecord], kind: &str) -> usize {
    incidents
        .iter()
        .filter(|i| i.kind == IncidentKind::JournalRepaired.as_str())
        .filter(|i| i.details.get("kind").and_then(|k| k.as_str()) == Some(kind))
        .count()
}

fn total(spans: impl Iterator<Item = (u64, u64)>) -> u64 {
    spans.map(|(from, to)| to.saturating_sub(from)).sum()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn judge(facts: Facts<'_>) -> Verdict {
    let Facts { recoveries, gpus_lost, intake_paused, state_band, incidents } = facts;
    let recovered = recoveries.iter().filter(|r| r.result == "recovered").count();
    let intake_paused_ms = total(intake_paused.iter().map(|s| (s.from_ms, s.to_ms)));
    let unhealthy_ms = total(state_band.iter().filter(|s| s.status == Status::Fail).map(|s| (s.from_ms, s.to_ms)));
    let no_data_ms = total(state_band.iter().filter(|s| s.status == Status::NoData).map(|s| (s.from_ms, s.to_ms)));
    let checkpoints_corrupt = incidents.iter().filter(|i| i.kind == IncidentKind::CheckpointCorrupt.as_str()).count();
    let journal_damaged = journal_repairs(incidents, "mid_file_corruption");
    let journal_writes_cut = journal_repairs(incidents, "torn_tail");
    let incidents_error = incidents.iter().filter(|i| i.severity >= IncidentSeverity::Error).count();

    let mut parts: Vec<String> = Vec::new();
    parts.push(match recoveries.len() {
        0 => "no recoveries".to_owned(),
        n if recovered == n => {
            format!("{} ({})", plural(n, "recovery", "recoveries"), if n == 1 { "recovered" } else { "all recovered" })
        }
        n => {
            let mut results: Vec<String> = Vec::new();
            const RESULTS: [&str; 5] = ["recovered", "not_recovered", "failed", "interrupted", "unfinished"];
            for result in RESULTS {
                let count = recoveries.iter().filter(|r| r.result == result).count();
                if count > 0 {
                    results.push(format!("{count} {}", result.replace('_', " ")));
                }
            }
            // A result this version does not know (a log written by another writer).
            let other = recoveries.iter().filter(|r| !RESULTS.contains(&r.result.as_str())).count();
            if other > 0 {
                results.push(format!("{other} with another result"));
            }
            format!("{} ({})", plural(n, "recovery", "recoveries"), results.join(", "))
        }
    });
    if gpus_lost.len() <= MAX_LOSSES_NAMED {
        for span in &gpus_lost {
            let (from, to) = (LocalTime::at(span.from_ms), LocalTime::at(span.to_ms));
            // Within one minute, the minute alone would say nothing: then seconds.
            let (from_text, to_text) = if from.hm() == to.hm() { (from.hms(), to.hms()) } else { (from.hm(), to.hm()) };
            parts.push(if span.back {
                format!("GPU {} lost {from_text}–{to_text} and back", span.index)
            } else {
                format!("GPU {} lost since {}", span.index, from.hm())
            });
        }
    } else {
        // Many losses: one sentence, the GPUs still lost named (the state rows show each).
        let mut gpus: Vec<u8> = gpus_lost.iter().map(|s| s.index).collect();
        gpus.sort_unstable();
        gpus.dedup();
        let names: Vec<String> = gpus.iter().map(u8::to_string).collect();
        let longest = gpus_lost.iter().map(|s| s.to_ms - s.from_ms).max().unwrap_or(0);
        let still: Vec<String> = gpus_lost
            .iter()
            .filter(|s| !s.back)
            .map(|s| format!("GPU {} since {}", s.index, LocalTime::at(s.from_ms).hm()))
            .collect();
        let back = if still.is_empty() { "all back".to_owned() } else { format!("still lost: {}", still.join(", ")) };
        parts.push(format!(
            "{} GPU losses ({} {}; longest {}; {back})",
            gpus_lost.len(),
            if gpus.len() == 1 { "GPU" } else { "GPUs" },
            names.join(", "),
            duration(longest)
        ));
    }
    if intake_paused_ms > 0 {
        parts.push(format!("intake paused {} in total", duration(intake_paused_ms)));
    }
    if unhealthy_ms > 0 {
        parts.push(format!("unhealthy {}", duration(unhealthy_ms)));
    }
    parts.push(if journal_damaged == 0 {
        "no acknowledged work lost".to_owned()
    } else {
        format!("journal damaged {}: acknowledged work after it may be lost", plural(journal_damaged, "time", "times"))
    });
    if checkpoints_corrupt > 0 {
        parts.push(format!("{} corrupt and set aside", plural(checkpoints_corrupt, "checkpoint", "checkpoints")));
    }
    if no_data_ms > 0 {
        parts.push(format!("no record for {}", duration(no_data_ms)));
    }

    let still_lost = gpus_lost.iter().any(|s| !s.back);
    let status = if still_lost || journal_damaged > 0 || recovered < recoveries.len() {
        Status::Fail
    } else if !recoveries.is_empty()
        || !gpus_lost.is_empty()
        || intake_paused_ms > 0
        || unhealthy_ms > 0
        || checkpoints_corrupt > 0
        || incidents.iter().any(|i| i.severity >= IncidentSeverity::Warn)
    {
        Status::Warn
    } else if state_band.iter().all(|s| s.status == Status::NoData) && incidents.is_empty() {
        Status::NoData
    } else {
        Status::Ok
    };
    let mut line = parts.join(", ");
    if let Some(first) = line.get(..1) {
        line = first.to_uppercase() + &line[1..];
    }
    Verdict {
        status,
        line,
        recoveries: recoveries.len(),
        recoveries_recovered: recovered,
        gpus_lost,
        intake_paused_ms,
        unhealthy_ms,
        checkpoints_corrupt,
        journal_damaged,
        journal_writes_cut,
        incidents: incidents.len(),
        incidents_error,
        no_data_ms,
    }
}
