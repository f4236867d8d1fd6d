//! Incident-log segments: any bytes as the newest segment. The log always opens and reads
//! (sequence numbers strictly increasing), gives the next record a sequence number above
//! every one read, and reopens without a torn tail and with the same records.
#![no_main]

#[path = "../../tests/support/mod.rs"]
mod support;

use hpc_health::durable::ProblemKind;
use hpc_health::durable::{IncidentLog, IncidentLogOptions, ReadFilter, RecordOutcome, Storage};
use hpc_health::incident::{Incident, IncidentSeverity};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let root = support::scratch::scratch_root();
    let dir = support::scratch::state_dir_with(root.path(), 0, support::verdict::SEGMENT_FILE, data);
    let open = || {
        IncidentLog::open(&dir, IncidentLogOptions::default(), Storage::new()).expect("a damaged segment still opens")
    };
    let (log, _problems) = open();
    let read = log.read(&ReadFilter::default()).expect("read").records;
    assert!(read.windows(2).all(|w| w[0].seq < w[1].seq), "sequence numbers out of order");
    let highest = read.last().map_or(0, |r| r.seq);
    let incident = Incident {
        kind: "fuzz".into(),
        severity: IncidentSeverity::Info,
        message: String::new(),
        details: json!(null),
    };
    let RecordOutcome::Written { seq, .. } = log.record(incident).expect("record after recovery") else {
        panic!("rate limited")
    };
    assert!(seq > highest, "sequence number {seq} reused (highest read {highest})");
    drop(log);
    let (log, again) = open();
    assert!(again.iter().all(|p| p.kind != ProblemKind::TornTail), "torn tail again: {again:?}");
    let mut reread = log.read(&ReadFilter::default()).expect("read").records;
    assert_eq!(reread.pop().map(|r| r.seq), Some(seq));
    assert_eq!(reread, read, "reopening changed the records");
});
