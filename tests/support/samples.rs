//! Valid inputs for each decoder, written as the stores write them, and what they replay
//! to: the originals that the property tests mutate and the corpus writer starts from.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use hpc_health::durable::checkpoint::{CHECKPOINT_HEADER_BYTES, CHECKPOINT_MAGIC};
use hpc_health::durable::{
    IncidentLog, IncidentLogOptions, IncidentRecord, Journal, JournalOptions, RateLimit, ReadFilter, RecoveryProblem,
    Storage,
};
use hpc_health::incident::{Incident, IncidentSeverity};
use serde_json::{json, Value};

use super::checks::json_depth;
use super::mutation::nested_arrays;
use super::verdict;

// Checkpoint files

pub fn checkpoint_payloads() -> Vec<Vec<u8>> {
    let big: Value = (0..40).map(|i| (format!("k{i}"), json!({ "v": [i, "x".repeat(i)], "f": 0.5 }))).collect();
    vec![
        b"{}".to_vec(),
        b"[]".to_vec(),
        b"0".to_vec(),
        br#"{"gen":1,"memory_state":{"gpus":[1,2,3]},"state":null}"#.to_vec(),
        "\"\u{e9}\\n\\u00e9\u{1F600}\"".as_bytes().to_vec(),
        nested_arrays(hpc_health::durable::defaults::MAX_JSON_DEPTH).into_bytes(),
        serde_json::to_vec(&big).unwrap(),
    ]
}

/// A checkpoint with every field chosen: a valid header CRC over hostile contents.
pub fn sealed_header(version: u16, flags: u16, seq: u64, ts: u64, len: u64, payload_crc: u32) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CHECKPOINT_HEADER_BYTES);
    bytes.extend_from_slice(&CHECKPOINT_MAGIC);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&flags.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&ts.to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&payload_crc.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

pub const CKPT_TS: u64 = 1_700_000_000_000;

// Journal files

/// `u32 length | u32 CRC-32C of the length bytes then the payload | payload`.
pub fn journal_frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), payload);
    [&len[..], &crc.to_le_bytes(), payload].concat()
}

pub fn begin(id: &str, ts: u64, details: Value) -> Value {
    json!({ "op": "begin", "id": id, "ts": ts, "details": details })
}

pub fn end(id: &str, ts: u64) -> Value {
    json!({ "op": "end", "id": id, "ts": ts, "result": "ok" })
}

/// A journal file and its records.
pub struct JournalFile {
    pub bytes: Vec<u8>,
    pub records: Vec<Value>,
    /// (offset, width, value) of each frame's length field.
    pub length_fields: Vec<(usize, usize, u64)>,
}

pub fn journal_file(records: Vec<Value>) -> JournalFile {
    let mut bytes = Vec::new();
    let mut length_fields = Vec::new();
    for record in &records {
        let payload = serde_json::to_vec(record).unwrap();
        length_fields.push((bytes.len(), 4, payload.len() as u64));
        bytes.extend(journal_frame(&payload));
    }
    JournalFile { bytes, records, length_fields }
}

pub fn journal_originals() -> Vec<JournalFile> {
    vec![
        journal_file(vec![
            begin("restart-gpu-0", 10, json!({ "gpu": 0 })),
            begin("drain", 11, json!(null)),
            end("restart-gpu-0", 12),
            begin("checkpoint", 13, json!({ "nested": [[1, 2], { "x": "y" }] })),
            end("drain", 14),
        ]),
        journal_file(vec![begin("one", 1, json!({ "text": "é\n\u{0}".repeat(50) }))]),
        journal_file(
            (0..24)
                .map(
                    |i| {
                        if i % 3 == 2 {
                            end(&format!("op{}", i - 1), i)
                        } else {
                            begin(&format!("op{i}"), i, json!(i))
                        }
                    },
                )
                .collect(),
        ),
        journal_file(vec![]),
    ]
}

pub type ActiveMap = BTreeMap<String, (u64, Value)>;

pub fn active(journal: &Journal) -> ActiveMap {
    journal.active_operations().into_iter().map(|o| (o.id, (o.started_at_ms, o.details))).collect()
}

pub fn apply_record(ops: &mut ActiveMap, record: &Value) {
    let id = record["id"].as_str().unwrap().to_string();
    if record["op"] == "begin" {
        ops.insert(id, (record["ts"].as_u64().unwrap(), record["details"].clone()));
    } else {
        ops.remove(&id);
    }
}

/// The active operations after each prefix of `records` (0..=len).
pub fn prefix_states(records: &[Value]) -> Vec<ActiveMap> {
    let mut states = vec![ActiveMap::new()];
    for record in records {
        let mut next = states.last().unwrap().clone();
        apply_record(&mut next, record);
        states.push(next);
    }
    states
}

pub fn open_journal(dir: &Path) -> (Journal, Vec<RecoveryProblem>) {
    Journal::open(dir, JournalOptions::default(), Storage::new()).expect("a damaged journal must still open")
}

// Incident-log segments

pub fn incident(kind: &str) -> Incident {
    Incident { kind: kind.into(), severity: IncidentSeverity::Warn, message: "m".into(), details: json!({ "k": kind }) }
}

pub fn open_log(dir: &Path) -> (IncidentLog, Vec<RecoveryProblem>) {
    IncidentLog::open(dir, IncidentLogOptions::default(), Storage::new()).expect("a damaged segment must still open")
}

/// Every record read back is well formed: sequence numbers strictly increase, kinds are
/// non-empty, details within the depth limit.
pub fn check_records(records: &[IncidentRecord]) {
    for pair in records.windows(2) {
        assert!(pair[0].seq < pair[1].seq, "sequence {} then {}", pair[0].seq, pair[1].seq);
    }
    for record in records {
        let details = serde_json::to_vec(&record.details).unwrap();
        assert!(json_depth(&details) < hpc_health::durable::defaults::MAX_JSON_DEPTH, "{record:?}");
    }
}

/// A segment written by the log itself, with a fixed clock, and its records.
pub fn incident_original(root: &Path, name: &str, incidents: Vec<Incident>) -> (Vec<u8>, Vec<IncidentRecord>) {
    let dir = root.join(name);
    let options = IncidentLogOptions {
        rate_limit: RateLimit { max: u32::MAX, window_ms: 1 },
        clock: std::sync::Arc::new(|| 1_700_000_000_123),
        ..IncidentLogOptions::default()
    };
    let (log, _) = IncidentLog::open(&dir, options, Storage::new()).unwrap();
    for incident in incidents {
        log.record(incident).unwrap();
    }
    let records = log.read(&ReadFilter::default()).unwrap().records;
    drop(log);
    let bytes = fs::read(dir.join(verdict::SEGMENT_FILE)).unwrap_or_default();
    (bytes, records)
}

pub fn incident_originals(root: &Path) -> Vec<(Vec<u8>, Vec<IncidentRecord>)> {
    let make = |kind: &str, severity, message: &str, details| Incident {
        kind: kind.into(),
        severity,
        message: message.into(),
        details,
    };
    vec![
        incident_original(
            root,
            "a",
            vec![
                make("memory_pressure", IncidentSeverity::Warn, "gpu 0 at 93%", json!({ "gpu": 0, "ratio": 0.93 })),
                make("recovery_started", IncidentSeverity::Info, "memory", json!(null)),
                make("xid", IncidentSeverity::Critical, "Xid 79 on \"gpu\"\n1", json!({ "xid": 79, "d": [[], {}] })),
                make("recovery_finished", IncidentSeverity::Error, "é\u{1F600}", json!("done")),
            ],
        ),
        incident_original(
            root,
            "b",
            (0..12).map(|i| make("k", IncidentSeverity::Info, &format!("{i}"), json!(i))).collect(),
        ),
        incident_original(
            root,
            "c",
            vec![make("big", IncidentSeverity::Warn, &"x".repeat(700), json!({ "a": [1, 2, 3] }))],
        ),
    ]
}
