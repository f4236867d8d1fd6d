//! Verdicts: what each decoder accepts. The corpus file names (`ok-…` / `bad-…`), the
//! corpus writer and the property tests all use these.

use std::fs;
use std::path::Path;

use hpc_health::durable::checkpoint::decode_checkpoint;
use hpc_health::durable::{ProblemKind, ReadFilter, RecordOutcome, RecoveryProblem};
use hpc_health::rpc::{handle_json_rpc, RpcLimits};
use serde_json::{json, Value};

use super::json_rpc::{check_rpc_response, AnsweringBackend};
use super::samples::{active, check_records, incident, open_journal, open_log};
use super::scratch::state_dir_with;

/// The sequence number a corpus checkpoint file is decoded for.
pub const CHECKPOINT_SEQ: u64 = 1;
pub const JOURNAL_FILE: &str = "journal-00000000000000000001.log";
pub const SEGMENT_FILE: &str = "incidents-00000000000000000001.jsonl";

/// Accepted: the file decodes.
pub fn checkpoint(bytes: &[u8]) -> bool {
    decode_checkpoint(bytes, CHECKPOINT_SEQ).is_ok()
}

/// Accepted: opens with nothing to repair or report.
pub fn journal(root: &Path, case: usize, bytes: &[u8]) -> bool {
    journal_problems(root, case, bytes).is_empty()
}

/// What opening found. Whatever it found, the journal must open, take a new operation
/// and reopen without a torn tail or mid-file damage and with the same operations.
pub fn journal_problems(root: &Path, case: usize, bytes: &[u8]) -> Vec<RecoveryProblem> {
    let dir = state_dir_with(root, case, JOURNAL_FILE, bytes);
    let (journal, problems) = open_journal(&dir);
    let before = active(&journal);
    journal.begin_operation("after-recovery", json!({ "case": case })).unwrap();
    drop(journal);
    let (journal, again) = open_journal(&dir);
    assert!(
        again.iter().all(|p| p.kind == ProblemKind::InconsistentRecord),
        "recovery did not settle: {again:?} (first open: {problems:?})"
    );
    let mut after = active(&journal);
    assert!(after.remove("after-recovery").is_some(), "a new operation after recovery was lost");
    assert_eq!(after, before, "reopening changed the active operations");
    drop(journal);
    fs::remove_dir_all(&dir).unwrap();
    problems
}

fn hpc_max_seq() -> u64 {
    hpc_health::durable::incident_log::MAX_SEQ
}

/// Accepted: opens and reads back with no problem.
pub fn incident_segment(root: &Path, case: usize, bytes: &[u8]) -> bool {
    incident_problems(root, case, bytes).is_empty()
}

/// What opening and reading found. Whatever it found, the log must take a new record
/// with a sequence number above every one read, and reopen without a torn tail and
/// with the same records.
pub fn incident_problems(root: &Path, case: usize, bytes: &[u8]) -> Vec<RecoveryProblem> {
    let dir = state_dir_with(root, case, SEGMENT_FILE, bytes);
    let (log, mut problems) = open_log(&dir);
    let read = log.read(&ReadFilter::default()).unwrap();
    check_records(&read.records);
    let highest = read.records.last().map_or(0, |r| r.seq);
    assert!(log.next_seq() > highest, "next_seq {} would reuse {highest}", log.next_seq());
    let written = match log.record(incident("after-recovery")) {
        Ok(RecordOutcome::Written { seq, .. }) => seq,
        Ok(RecordOutcome::RateLimited) => panic!("rate limited"),
        // The one way to refuse a new record: the sequence numbers JavaScript can hold are used up.
        Err(e) if highest == hpc_max_seq() => {
            assert_eq!(e.code, hpc_health::durable::ERR_INVALID_ARGUMENT);
            return problems;
        }
        Err(e) => panic!("{e:?}"),
    };
    assert!(written > highest, "new record got seq {written}, after {highest}");
    drop(log);
    let (log, again) = open_log(&dir);
    assert!(again.iter().all(|p| p.kind != ProblemKind::TornTail), "torn tail again: {again:?}");
    let mut reread = log.read(&ReadFilter::default()).unwrap().records;
    let last = reread.pop().expect("the new record");
    assert_eq!((last.seq, last.kind.as_str()), (written, "after-recovery"));
    assert_eq!(reread, read.records, "reopening changed the records");
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
    problems.extend(read.problems);
    problems
}

/// Accepted: answered without any `error` member (nothing, for notifications; MCP tool
/// failures are results with `isError`).
pub fn json_rpc(text: &str) -> bool {
    match json_rpc_response(text) {
        None => true,
        Some(Value::Array(items)) => items.iter().all(|r| r.get("error").is_none()),
        Some(single) => single.get("error").is_none(),
    }
}

/// The answer (with a backend that authorizes), checked to be well formed.
pub fn json_rpc_response(text: &str) -> Option<Value> {
    let limits = RpcLimits::default();
    let response = futures::executor::block_on(handle_json_rpc(text, &AnsweringBackend::allowing(), &limits));
    check_rpc_response(text, &limits, &response);
    response
}
