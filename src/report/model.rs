//! The report's data: what the history and the incident log say about a span of time, as
//! one value every renderer reads and `--json` prints. Every figure here is computed from
//! those two sources, and the verdict says which it came from (see `verdict`).

use serde::Serialize;

use crate::durable::IncidentRecord;
use crate::history::record::{GpuSignal, HostSignal, Record, Stat, FLAG_GPU_LOST, FLAG_INTAKE_CLOSED};
use crate::history::{HealthState, HistoryReadout, Source};

/// Empty buckets between two records that still count as covered: the loop times each check
/// from the end of the last, so at a step equal to the interval a bucket now and then holds
/// no check. More than this is a gap (`no_data`), and the charts break their lines there.
pub const COVERED_GAP_STEPS: u64 = 1;

/// The thresholds the charts draw (the service's own where it passes them, else the
/// package's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReportThresholds {
    /// Fraction of a GPU's memory above which it is under pressure.
    pub gpu_memory: f64,
    /// Fraction of host (or cgroup) memory above which the host is under pressure.
    pub system_memory: f64,
    /// GPU temperature at or above which a device fails, °C.
    pub temperature_c: f64,
}

impl Default for ReportThresholds {
    fn default() -> Self {
        use crate::policy::thresholds::{GPU_MEMORY, SYSTEM_MEMORY, TEMPERATURE};
        ReportThresholds {
            gpu_memory: GPU_MEMORY.default,
            system_memory: SYSTEM_MEMORY.default,
            temperature_c: TEMPERATURE.default,
        }
    }
}

/// How a thing looks wherever it is shown: one status vocabulary, one colour each
/// (`palette`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Nothing recorded (the service was not running, or not yet checking).
    NoData,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::NoData => "no_data",
        }
    }

    /// The status an incident's severity is shown with.
    pub fn of_severity(severity: crate::incident::IncidentSeverity) -> Status {
        use crate::incident::IncidentSeverity::*;
        match severity {
            Info => Status::Ok,
            Warn => Status::Warn,
            Error | Critical => Status::Fail,
        }
    }
}

/// The supervisor's state over a span of time (the state band).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateSpan {
    pub from_ms: u64,
    pub to_ms: u64,
    /// `healthy`, `unhealthy`, `starting`, `unknown`, or `no_data` where nothing was recorded.
    pub state: &'static str,
    pub status: Status,
}

/// A span of time, `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub from_ms: u64,
    pub to_ms: u64,
}

/// A GPU seen lost over a span of buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuLostSpan {
    pub index: u8,
    pub from_ms: u64,
    pub to_ms: u64,
    /// Recorded as present again after the span (false: still lost at the end).
    pub back: bool,
}

/// One automatic or operator recovery, from its `recovery_started` and `recovery_finished`
/// incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoveryRun {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// `recovered`, `not_recovered`, `failed`, `interrupted`, or `unfinished` (no
    /// `recovery_finished` in the span: still running, or the process died).
    pub result: String,
    /// The sequence numbers of its incidents.
    pub seqs: Vec<u64>,
}

/// One signal of one source over time: a point per bucket that had it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Stable key (`memory_used_mib`, `temperature_c`, …).
    pub key: &'static str,
    pub unit: &'static str,
    pub points: Vec<Point>,
}

/// A bucket's `[start, start + step)` values of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub t: u64,
    pub step_ms: u32,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

impl Series {
    fn new(key: &'static str, unit: &'static str) -> Self {
        Series { key, unit, points: Vec::new() }
    }

    fn push(&mut self, record: &Record, slot: usize, scale: f64) {
        if let Some(Stat { min, max, last }) = record.stat(slot) {
            self.points.push(Point {
                t: record.start_ms,
                step_ms: record.step_ms,
                min: f64::from(min) / scale,
                max: f64::from(max) / scale,
                last: f64::from(last) / scale,
            });
        }
    }

    /// Least and greatest value over the span.
    pub fn range(&self) -> Option<(f64, f64)> {
        let min = self.points.iter().map(|p| p.min).reduce(f64::min)?;
        let max = self.points.iter().map(|p| p.max).reduce(f64::max)?;
        Some((min, max))
    }
}

/// The host's signals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSeries {
    pub memory_used_mib: Series,
    pub memory_total_mib: Series,
    pub psi_some_avg10: Series,
    pub psi_full_avg10: Series,
    pub issues: Series,
}

/// One GPU's signals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuSeries {
    pub index: u8,
    pub memory_used_mib: Series,
    pub memory_total_mib: Series,
    pub temperature_c: Series,
    pub utilization_pct: Series,
    pub power_w: Series,
}

impl GpuSeries {
    fn new(index: u8) -> Self {
        GpuSeries {
            index,
            memory_used_mib: Series::new("memory_used_mib", "MiB"),
            memory_total_mib: Series::new("memory_total_mib", "MiB"),
            temperature_c: Series::new("temperature_c", "°C"),
            utilization_pct: Series::new("utilization_pct", "%"),
            power_w: Series::new("power_w", "W"),
        }
    }
}

/// The verdict's figures; `line` says them in one sentence (`verdict::line`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub status: Status,
    pub line: String,
    pub recoveries: usize,
    pub recoveries_recovered: usize,
    pub gpus_lost: Vec<GpuLostSpan>,
    /// Time intake was held, in the history's buckets (each bucket in which it was held
    /// counts whole: a bound at the history's resolution).
    pub intake_paused_ms: u64,
    pub unhealthy_ms: u64,
    /// `checkpoint_corrupt` incidents: checkpoints found damaged and set aside.
    pub checkpoints_corrupt: usize,
    /// `journal_repaired` incidents with damage followed by valid records: acknowledged
    /// operations after the damage may be lost. Zero means no acknowledged work lost.
    pub journal_damaged: usize,
    /// `journal_repaired` incidents for an interrupted write cut away: never acknowledged.
    pub journal_writes_cut: usize,
    pub incidents: usize,
    pub incidents_error: usize,
    /// Time covered by no history record (the service down, or recording off).
    pub no_data_ms: u64,
}

/// Everything a report shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub since_ms: u64,
    pub until_ms: u64,
    pub thresholds: ReportThresholds,
    pub verdict: Verdict,
    pub state_band: Vec<StateSpan>,
    pub intake_paused: Vec<Span>,
    pub recoveries: Vec<RecoveryRun>,
    pub host: HostSeries,
    pub gpus: Vec<GpuSeries>,
    /// The incident log's records in the span, oldest first.
    pub incidents: Vec<IncidentRecord>,
    /// History records that failed their check, and incident lines skipped.
    pub skipped_records: u64,
    /// What the report could not read (a missing history or incident log), in words.
    pub notes: Vec<String>,
}

/// The inputs of a report: what was read, and the span.
pub struct ReportInput<'a> {
    pub history: &'a HistoryReadout,
    pub incidents: &'a [IncidentRecord],
    pub since_ms: u64,
    pub until_ms: u64,
    pub thresholds: ReportThresholds,
    pub notes: Vec<String>,
    pub skipped_incident_lines: u64,
}

/// Builds the report (pure: the reading is the caller's).
pub fn build(input: ReportInput<'_>) -> Report {
    let ReportInput { history, incidents, since_ms, until_ms, thresholds, notes, skipped_incident_lines } = input;
    let in_span = |r: &Record| r.end_ms() > since_ms && r.start_ms < until_ms;
    let host_records: Vec<&Record> =
        history.records.iter().filter(|r| r.source == Source::Host && in_span(r)).collect();

    let mut host = HostSeries {
        memory_used_mib: Series::new("memory_used_mib", "MiB"),
        memory_total_mib: Series::new("memory_total_mib", "MiB"),
        psi_some_avg10: Series::new("psi_some_avg10", "%"),
        psi_full_avg10: Series::new("psi_full_avg10", "%"),
        issues: Series::new("issues", "issues"),
    };
    for r in &host_records {
        host.memory_used_mib.push(r, HostSignal::MemoryUsedMib as usize, 1.0);
        host.memory_total_mib.push(r, HostSignal::MemoryTotalMib as usize, 1.0);
        host.psi_some_avg10.push(r, HostSignal::PsiSomeCentis as usize, 100.0);
        host.psi_full_avg10.push(r, HostSignal::PsiFullCentis as usize, 100.0);
        host.issues.push(r, HostSignal::Issues as usize, 1.0);
    }

    let mut gpus: Vec<GpuSeries> = Vec::new();
    let mut lost: Vec<GpuLostSpan> = Vec::new();
    // Each GPU's span in `lost` not yet seen back.
    let mut open_lost: std::collections::HashMap<u8, usize> = std::collections::HashMap::new();
    for r in history.records.iter().filter(|r| in_span(r)) {
        let Source::Gpu(index) = r.source else { continue };
        let at = match gpus.iter().position(|g| g.index == index) {
            Some(at) => at,
            None => {
                gpus.push(GpuSeries::new(index));
                gpus.len() - 1
            }
        };
        let g = &mut gpus[at];
        g.memory_used_mib.push(r, GpuSignal::MemoryUsedMib as usize, 1.0);
        g.memory_total_mib.push(r, GpuSignal::MemoryTotalMib as usize, 1.0);
        g.temperature_c.push(r, GpuSignal::TemperatureC as usize, 1.0);
        g.utilization_pct.push(r, GpuSignal::UtilizationPct as usize, 1.0);
        g.power_w.push(r, GpuSignal::PowerMilliwatts as usize, 1000.0);
        let end = r.end_ms();
        let was_lost = r.flags_seen & FLAG_GPU_LOST != 0;
        match (was_lost, open_lost.get(&index).copied()) {
            // Lost on both sides of a gap in the record: one span (nothing says it came back).
            (true, Some(at)) => lost[at].to_ms = end,
            (true, None) => {
                open_lost.insert(index, lost.len());
                lost.push(GpuLostSpan { index, from_ms: r.start_ms, to_ms: end, back: false });
            }
            (false, Some(at)) => {
                lost[at].back = true;
                open_lost.remove(&index);
            }
            (false, None) => {}
        }
        // Lost at the bucket's start but back by its end.
        if was_lost && r.flags_last & FLAG_GPU_LOST == 0 {
            if let Some(at) = open_lost.remove(&index) {
                lost[at].back = true;
            }
        }
    }
    gpus.sort_by_key(|g| g.index);
    lost.sort_by_key(|s| (s.from_ms, s.index));

    let state_band = state_band(&host_records, since_ms, until_ms);
    let intake_paused = spans_where(&host_records, |r| r.flags_seen & FLAG_INTAKE_CLOSED != 0);
    let incidents: Vec<IncidentRecord> =
        incidents.iter().filter(|i| i.timestamp_ms >= since_ms && i.timestamp_ms <= until_ms).cloned().collect();
    let recoveries = recoveries(&incidents);
    let verdict = super::verdict::judge(super::verdict::Facts {
        recoveries: &recoveries,
        gpus_lost: lost,
        intake_paused: &intake_paused,
        state_band: &state_band,
        incidents: &incidents,
    });
    Report {
        since_ms,
        until_ms,
        thresholds,
        verdict,
        state_band,
        intake_paused,
        recoveries,
        host,
        gpus,
        incidents,
        skipped_records: history.skipped + skipped_incident_lines,
        notes,
    }
}

fn state_name(code: u8) -> &'static str {
    HealthState::from_code(code).map_or("unknown", HealthState::as_str)
}

fn state_status(state: &str) -> Status {
    match state {
        "healthy" => Status::Ok,
        "unhealthy" => Status::Fail,
        "no_data" => Status::NoData,
        _ => Status::Warn,
    }
}

/// The state band over `[since, until)`: each bucket's worst state seen (an unhealthy
/// moment inside a healthy bucket shows), merged into spans; time no record covers is
/// `no_data`.
fn state_band(host: &[&Record], since_ms: u64, until_ms: u64) -> Vec<StateSpan> {
    let mut band: Vec<StateSpan> = Vec::new();
    let mut push = |from_ms: u64, to_ms: u64, state: &'static str| {
        let (from_ms, to_ms) = (from_ms.max(since_ms), to_ms.min(until_ms));
        if from_ms >= to_ms {
            return;
        }
        match band.last_mut() {
            Some(last) if last.state == state && last.to_ms >= from_ms => last.to_ms = last.to_ms.max(to_ms),
            _ => band.push(StateSpan { from_ms, to_ms, state, status: state_status(state) }),
        }
    };
    let mut covered_to = since_ms;
    let mut previous: Option<&'static str> = None;
    for r in host {
        let end = r.end_ms();
        if r.start_ms > covered_to {
            let tolerated = COVERED_GAP_STEPS * u64::from(r.step_ms);
            match previous {
                // The loop's own rhythm: the state before goes on.
                Some(state) if r.start_ms - covered_to <= tolerated => push(covered_to, r.start_ms, state),
                _ => push(covered_to, r.start_ms, "no_data"),
            }
        }
        let worst = [HealthState::Unhealthy, HealthState::Unknown, HealthState::Starting]
            .into_iter()
            .find(|s| r.states_seen & (1 << *s as u8) != 0)
            .map(HealthState::as_str)
            .unwrap_or_else(|| state_name(r.state_last));
        push(r.start_ms.max(covered_to), end, worst);
        previous = Some(worst);
        covered_to = covered_to.max(end);
    }
    if covered_to < until_ms {
        push(covered_to, until_ms, "no_data");
    }
    band
}

/// The buckets where `holds`, merged into spans.
fn spans_where(host: &[&Record], holds: impl Fn(&Record) -> bool) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for r in host.iter().filter(|r| holds(r)) {
        let end = r.end_ms();
        match spans.last_mut() {
            Some(last) if last.to_ms >= r.start_ms => last.to_ms = last.to_ms.max(end),
            _ => spans.push(Span { from_ms: r.start_ms, to_ms: end }),
        }
    }
    spans
}

/// The recoveries the incident log records, paired by id; a `recovery_finished` whose start
/// is before the span still counts (its `started_at` says when).
fn recoveries(incidents: &[IncidentRecord]) -> Vec<RecoveryRun> {
    let mut runs: Vec<RecoveryRun> = Vec::new();
    // The run of each id started and not yet finished.
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let text = |i: &IncidentRecord, key: &str| i.details.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let time = |i: &IncidentRecord, key: &str| {
        i.details.get(key).and_then(|v| v.as_f64()).map_or(i.timestamp_ms, |t| t as u64)
    };
    for i in incidents {
        match i.kind.as_str() {
            "recovery_started" => {
                open.insert(text(i, "id"), runs.len());
                runs.push(RecoveryRun {
                    id: text(i, "id"),
                    kind: text(i, "type"),
                    started_ms: time(i, "started_at"),
                    finished_ms: None,
                    result: "unfinished".to_owned(),
                    seqs: vec![i.seq],
                });
            }
            "recovery_finished" => {
                let id = text(i, "id");
                match open.remove(&id) {
                    Some(at) => {
                        let run = &mut runs[at];
                        run.finished_ms = Some(time(i, "finished_at"));
                        run.result = text(i, "result");
                        run.seqs.push(i.seq);
                    }
                    None => runs.push(RecoveryRun {
                        id,
                        kind: text(i, "type"),
                        started_ms: time(i, "started_at"),
                        finished_ms: Some(time(i, "finished_at")),
                        result: text(i, "result"),
                        seqs: vec![i.seq],
                    }),
                }
            }
            _ => {}
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::super::clock::LocalTime;
    use super::super::fixture::{self, at, DOWN, LOST, PAUSED, STEP_MS};
    use super::*;

    #[test]
    fn the_verdict_names_each_thing_that_happened_from_its_source() {
        let report = fixture::report();
        let v = &report.verdict;
        assert_eq!((v.recoveries, v.recoveries_recovered), (2, 2));
        assert_eq!(
            v.gpus_lost,
            vec![GpuLostSpan { index: 1, from_ms: at(LOST.start), to_ms: at(LOST.end), back: true }]
        );
        assert_eq!(v.intake_paused_ms, (PAUSED.end - PAUSED.start) * STEP_MS);
        assert_eq!(v.unhealthy_ms, (LOST.end - LOST.start) * STEP_MS);
        assert_eq!(v.no_data_ms, (DOWN.end - DOWN.start) * STEP_MS);
        assert_eq!((v.checkpoints_corrupt, v.journal_damaged, v.journal_writes_cut), (1, 0, 1));
        assert_eq!(v.status, Status::Warn);
        let (from, to) = (LocalTime::at(at(LOST.start)).hm(), LocalTime::at(at(LOST.end)).hm());
        assert_eq!(
            v.line,
            format!(
                "2 recoveries (all recovered), GPU 1 lost {from}–{to} and back, intake paused 2 min in total, \
                 unhealthy 1 min, no acknowledged work lost, 1 checkpoint corrupt and set aside, no record for 1 min"
            )
        );
    }

    #[test]
    fn the_state_band_covers_the_span_with_gaps_as_no_data() {
        let report = fixture::report();
        let band = &report.state_band;
        assert_eq!(band.first().unwrap().from_ms, report.since_ms);
        assert_eq!(band.last().unwrap().to_ms, report.until_ms);
        assert!(band.windows(2).all(|w| w[0].to_ms == w[1].from_ms), "contiguous: {band:?}");
        let states: Vec<&str> = band.iter().map(|s| s.state).collect();
        assert_eq!(states, ["healthy", "unhealthy", "healthy", "no_data", "healthy"]);
        assert_eq!(band[1].from_ms, at(LOST.start));
        assert_eq!(report.intake_paused, vec![Span { from_ms: at(PAUSED.start), to_ms: at(PAUSED.end) }]);
    }

    #[test]
    fn recoveries_pair_by_id_and_series_skip_what_a_lost_gpu_did_not_say() {
        let report = fixture::report();
        let runs: Vec<(&str, &str, Vec<u64>)> =
            report.recoveries.iter().map(|r| (r.kind.as_str(), r.result.as_str(), r.seqs.clone())).collect();
        assert_eq!(runs, [("gpu", "recovered", vec![4, 5]), ("memory", "recovered", vec![7, 8])]);
        let gpu1 = &report.gpus[1];
        let buckets = fixture::BUCKETS - (DOWN.end - DOWN.start);
        assert_eq!(gpu1.memory_used_mib.points.len() as u64, buckets - (LOST.end - LOST.start));
        assert_eq!(report.gpus[0].memory_used_mib.range(), Some((30_000.0, 72_000.0)));
        assert_eq!(report.gpus[0].power_w.points[0].last, 350.0);
    }

    #[test]
    fn a_gpu_still_lost_at_the_end_or_a_failed_recovery_fails_the_verdict() {
        let mut history = fixture::history();
        for r in history.records.iter_mut().filter(|r| r.source == Source::Gpu(0) && r.start_ms >= at(350)) {
            r.set_flags(FLAG_GPU_LOST);
        }
        let mut incidents = fixture::incidents();
        incidents.retain(|i| i.seq != 8);
        let report = fixture::report_of(&history, &incidents);
        let v = &report.verdict;
        assert_eq!(v.status, Status::Fail);
        assert!(v.line.starts_with("2 recoveries (1 recovered, 1 unfinished)"), "{}", v.line);
        assert!(v.line.contains(&format!("GPU 0 lost since {}", LocalTime::at(at(350)).hm())), "{}", v.line);
    }

    #[test]
    fn one_empty_bucket_is_the_loops_rhythm_two_are_a_gap() {
        // Checks a little slower than the step: every 7th bucket holds none.
        let mut history = fixture::history();
        history.records.retain(|r| (r.start_ms - fixture::SINCE_MS) / STEP_MS % 7 != 3);
        let down = (DOWN.end - DOWN.start) * STEP_MS;
        assert_eq!(fixture::report_of(&history, &[]).verdict.no_data_ms, down, "only the real outage is no record");
        // Two buckets in a row without a check: a gap.
        history.records.retain(|r| (r.start_ms - fixture::SINCE_MS) / STEP_MS != 47);
        history.records.retain(|r| (r.start_ms - fixture::SINCE_MS) / STEP_MS != 48);
        assert_eq!(fixture::report_of(&history, &[]).verdict.no_data_ms, down + 2 * STEP_MS);
    }

    #[test]
    fn without_a_history_the_incidents_still_judge_and_an_unknown_result_is_named() {
        let history = HistoryReadout::default();
        let mut incidents = fixture::incidents();
        incidents.retain(|i| i.seq != 5);
        incidents[0].details = serde_json::json!({});
        let mut finished = incidents.iter().find(|i| i.seq == 8).unwrap().clone();
        finished.details["result"] = serde_json::json!("rolled_back");
        incidents.retain(|i| i.seq != 8);
        incidents.push(finished);
        let report = fixture::report_of(&history, &incidents);
        assert_eq!(report.verdict.status, Status::Fail, "{}", report.verdict.line);
        assert!(
            report.verdict.line.starts_with("2 recoveries (1 unfinished, 1 with another result)"),
            "{}",
            report.verdict.line
        );
        // Warnings alone make it worth a look, with or without a history.
        let warned = [fixture::record(
            1,
            fixture::SINCE_MS + 1,
            "memory_pressure",
            crate::incident::IncidentSeverity::Warn,
            "m",
            serde_json::json!({}),
        )];
        let report = fixture::report_of(&history, &warned);
        assert_eq!(report.verdict.status, Status::Warn);
    }

    #[test]
    fn many_gpu_losses_are_one_part_of_the_verdict() {
        let mut history = fixture::history();
        // GPU 0 lost for one bucket every 20, and still lost at the end.
        for r in history.records.iter_mut().filter(|r| r.source == Source::Gpu(0)) {
            let bucket = (r.start_ms - fixture::SINCE_MS) / STEP_MS;
            if bucket % 20 == 5 || bucket >= 350 {
                r.set_flags(FLAG_GPU_LOST);
            }
        }
        let report = fixture::report_of(&history, &[]);
        let v = &report.verdict;
        assert!(v.gpus_lost.len() > 3);
        let expected = format!(
            "No recoveries, {} GPU losses (GPUs 0, 1; longest 2 min; still lost: GPU 0 since {}), ",
            v.gpus_lost.len(),
            LocalTime::at(at(350)).hm()
        );
        assert!(v.line.starts_with(&expected), "{}", v.line);
    }

    #[test]
    fn nothing_recorded_is_said_as_such() {
        let history = HistoryReadout::default();
        let report = build(ReportInput {
            history: &history,
            incidents: &[],
            since_ms: 0,
            until_ms: 60_000,
            thresholds: ReportThresholds::default(),
            notes: Vec::new(),
            skipped_incident_lines: 0,
        });
        assert_eq!(report.verdict.status, Status::NoData);
        assert_eq!(report.verdict.line, "No recoveries, no acknowledged work lost, no record for 1 min");
    }
}
