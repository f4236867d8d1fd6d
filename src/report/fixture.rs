//! A recorded hour for the report's tests: what each renderer and the verdict are checked
//! against. One place, so every test reads the same night.

use serde_json::json;

use crate::durable::IncidentRecord;
use crate::history::record::{GpuSignal, HostSignal, Record, FLAG_GPU_LOST, FLAG_INTAKE_CLOSED, FLAG_UNHEALTHY_CHECK};
use crate::history::{HealthState, HistoryReadout, Source};
use crate::incident::IncidentSeverity;

pub const STEP_MS: u64 = 10_000;
/// 2025-12-02T00:00:00Z.
pub const SINCE_MS: u64 = 1_764_633_600_000;
pub const BUCKETS: u64 = 360;
pub const UNTIL_MS: u64 = SINCE_MS + BUCKETS * STEP_MS;
/// GPU 1 is lost in buckets `LOST`; intake is held over `PAUSED`.
pub const LOST: std::ops::Range<u64> = 100..106;
pub const PAUSED: std::ops::Range<u64> = 100..112;
/// GPU 0's memory is over its threshold in these buckets, and its temperature in `HOT`.
pub const RAMP: std::ops::Range<u64> = 200..210;
pub const HOT: std::ops::Range<u64> = 300..303;
/// No record at all (the service was down).
pub const DOWN: std::ops::Range<u64> = 330..336;

pub fn at(bucket: u64) -> u64 {
    SINCE_MS + bucket * STEP_MS
}

/// The history: the host and two 80 GiB GPUs, one record each per 10 s bucket.
pub fn history() -> HistoryReadout {
    let mut records = Vec::new();
    for b in (0..BUCKETS).filter(|b| !DOWN.contains(b)) {
        let mut host = Record::new(Source::Host, STEP_MS as u32, at(b));
        host.set(HostSignal::MemoryUsedMib as usize, Some(20_000 + (b as u32 % 7) * 100));
        host.set(HostSignal::MemoryTotalMib as usize, Some(65_536));
        host.set(HostSignal::PsiSomeCentis as usize, Some(if RAMP.contains(&b) { 1250 } else { 0 }));
        host.set(HostSignal::PsiFullCentis as usize, Some(0));
        let unhealthy = LOST.contains(&b);
        host.set(HostSignal::Issues as usize, Some(u32::from(unhealthy)));
        host.set_state(if unhealthy { HealthState::Unhealthy } else { HealthState::Healthy });
        let mut flags = if unhealthy { FLAG_UNHEALTHY_CHECK } else { 0 };
        if PAUSED.contains(&b) {
            flags |= FLAG_INTAKE_CLOSED;
        }
        host.set_flags(flags);
        records.push(host);
        for index in 0..2u8 {
            let mut gpu = Record::new(Source::Gpu(index), STEP_MS as u32, at(b));
            let lost = index == 1 && LOST.contains(&b);
            if !lost {
                let used = if index == 0 && RAMP.contains(&b) { 72_000 } else { 30_000 + index as u32 * 1000 };
                gpu.set(GpuSignal::MemoryUsedMib as usize, Some(used));
                gpu.set(GpuSignal::MemoryTotalMib as usize, Some(81_920));
                gpu.set(GpuSignal::TemperatureC as usize, Some(if index == 0 && HOT.contains(&b) { 86 } else { 60 }));
                gpu.set(GpuSignal::UtilizationPct as usize, Some(90));
                gpu.set(GpuSignal::PowerMilliwatts as usize, Some(350_000));
            }
            gpu.set_flags(if lost { FLAG_GPU_LOST } else { 0 });
            records.push(gpu);
        }
    }
    HistoryReadout { records, ..HistoryReadout::default() }
}

/// An incident log record, as the log would give it back.
pub fn record(
    seq: u64,
    timestamp_ms: u64,
    kind: &str,
    severity: IncidentSeverity,
    message: &str,
    details: serde_json::Value,
) -> IncidentRecord {
    IncidentRecord { seq, timestamp_ms, kind: kind.to_owned(), severity, message: message.to_owned(), details }
}

fn incident(
    seq: u64,
    bucket: u64,
    kind: &str,
    severity: IncidentSeverity,
    message: &str,
    details: serde_json::Value,
) -> IncidentRecord {
    record(seq, at(bucket) + 1_000, kind, severity, message, details)
}

/// The incident log of the hour: a GPU lost and recovered, a memory ramp recovered, routine
/// checkpoints, one corrupt checkpoint set aside and a torn journal tail cut.
pub fn incidents() -> Vec<IncidentRecord> {
    use IncidentSeverity::*;
    let mut log = vec![
        incident(
            1,
            0,
            "journal_repaired",
            Warn,
            "journal journal-0001.log: torn tail",
            json!({ "kind": "torn_tail", "file": "journal-0001.log" }),
        ),
        incident(
            2,
            0,
            "checkpoint_corrupt",
            Error,
            "checkpoint c-1 skipped: bad checksum",
            json!({ "id": "c-1", "set_aside_as": "corrupt-c-1" }),
        ),
        incident(3, 100, "gpu_issue", Error, "GPU 1 lost: <unknown error>", json!({ "code": "GPU_LOST", "device": 1 })),
        incident(
            4,
            101,
            "recovery_started",
            Warn,
            "gpu recovery r-1 started",
            json!({ "id": "r-1", "type": "gpu", "started_at": at(101) }),
        ),
        incident(
            5,
            106,
            "recovery_finished",
            Info,
            "gpu recovery r-1 finished: recovered",
            json!({ "id": "r-1", "type": "gpu", "started_at": at(101), "finished_at": at(106), "result": "recovered" }),
        ),
        incident(
            6,
            200,
            "memory_pressure",
            Warn,
            "GPU 0 memory at 88%",
            json!({ "code": "GPU_MEMORY_PRESSURE", "device": 0 }),
        ),
        incident(
            7,
            201,
            "recovery_started",
            Warn,
            "memory recovery r-2 started",
            json!({ "id": "r-2", "type": "memory", "started_at": at(201) }),
        ),
        incident(
            8,
            203,
            "recovery_finished",
            Info,
            "memory recovery r-2 finished: recovered",
            json!({ "id": "r-2", "type": "memory", "started_at": at(201), "finished_at": at(203), "result": "recovered" }),
        ),
    ];
    for (i, bucket) in [60, 120, 180, 240, 300].into_iter().enumerate() {
        log.push(incident(9 + i as u64, bucket, "checkpoint_created", Info, "checkpoint created", json!({})));
    }
    log.sort_by_key(|i| i.timestamp_ms);
    log
}

/// The report of the hour with the default thresholds.
pub fn report() -> super::Report {
    report_of(&history(), &incidents())
}

/// The report on the hour of `history` and `incidents`, with the default thresholds.
pub fn report_of(history: &HistoryReadout, incidents: &[IncidentRecord]) -> super::Report {
    super::model::build(super::model::ReportInput {
        history,
        incidents,
        since_ms: SINCE_MS,
        until_ms: UNTIL_MS,
        thresholds: super::ReportThresholds::default(),
        notes: Vec::new(),
        skipped_incident_lines: 0,
    })
}
