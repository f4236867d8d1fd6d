//! Journal files: any bytes as the newest journal file. The journal always opens, takes a
//! new operation after recovery, and reopens settled (no torn tail, no mid-file damage)
//! with the same operations.
#![no_main]

#[path = "../../tests/support/mod.rs"]
mod support;

use hpc_health::durable::{Journal, JournalOptions, ProblemKind, Storage};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let root = support::scratch::scratch_root();
    let dir = support::scratch::state_dir_with(root.path(), 0, support::verdict::JOURNAL_FILE, data);
    let open =
        || Journal::open(&dir, JournalOptions::default(), Storage::new()).expect("a damaged journal still opens");
    let (journal, _problems) = open();
    let before = journal.active_operations();
    let added = journal.begin_operation("\u{1}fuzz-after-recovery", json!(null)).is_ok();
    drop(journal);
    let (journal, again) = open();
    assert!(again.iter().all(|p| p.kind == ProblemKind::InconsistentRecord), "recovery did not settle: {again:?}");
    let mut after = journal.active_operations();
    if added {
        let at = after.iter().position(|o| o.id == "\u{1}fuzz-after-recovery").expect("the new operation survives");
        after.remove(at);
    }
    let key = |ops: &mut Vec<hpc_health::durable::ActiveOperation>| ops.sort_by(|a, b| a.id.cmp(&b.id));
    let mut before = before;
    key(&mut before);
    key(&mut after);
    assert_eq!(after, before, "reopening changed the active operations");
});
