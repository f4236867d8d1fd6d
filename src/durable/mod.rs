//! Durable state: one persistence module owns every file protocol; checkpoints, the operation journal and the incident log build on it.
//!
//! - [`persist`]: durable whole-file writes (temp, fsync, rename, directory fsync; rewrite
//!   once on failure), durable appends, bounded reads, safe locked state directories, the
//!   error type and codes, and the [`Storage`] I/O layer with fault injection for tests.
//! - `dir`: a directory used only through the handle opened and checked once (`openat`,
//!   `renameat`, `unlinkat`, `fdopendir`); never follows a symlink or opens what is not a
//!   regular file.
//! - [`checkpoint`]: checksummed checkpoint generations; the newest valid one wins.
//! - [`journal`]: begun-and-not-ended operations, group-committed, replayed on open.
//! - [`incident_log`]: JSON Lines incidents in segments, group-committed, rate limited;
//!   the durable [`crate::incident::IncidentSink`].
//! - [`defaults`]: every policy number.
//!
//! Plain Rust: nothing here knows of JavaScript.

pub mod checkpoint;
pub mod closable;
pub mod defaults;
pub(crate) mod dir;
pub mod incident_log;
pub mod journal;
pub mod manager;
pub mod persist;

pub use checkpoint::{Checkpoint, CheckpointMeta, CheckpointStore, LatestValid, SkippedFile};
pub use incident_log::{
    Clock, IncidentLog, IncidentLogOptions, IncidentRecord, RateLimit, ReadFilter, ReadResult, RecordOutcome,
};
pub use journal::{ActiveOperation, Journal, JournalOptions};
pub use persist::{
    open_state_dir, DurableError, FaultKind, FaultPlan, IoOp, ProblemKind, RecoveryProblem, Result, StateDir, Storage,
    ERR_CHECKPOINT_LOCKED, ERR_CORRUPT, ERR_DUPLICATE, ERR_INCIDENT_LOG_LOCKED, ERR_INVALID_ARGUMENT, ERR_INVALID_ID,
    ERR_INVALID_JSON, ERR_INVALID_RETAIN, ERR_IO, ERR_NOT_FOUND, ERR_PERSIST_FAILED, ERR_TOO_LARGE,
    ERR_UNSAFE_DIRECTORY,
};

/// Crashing the writer for real: a child process (this test binary, re-run on one ignored
/// test) writes checkpoints, journal records and incidents as fast as it can and prints
/// each acknowledgement; the parent SIGKILLs it at some point and checks that everything
/// acknowledged is there and everything opens cleanly. (A process kill, not a power cut:
/// the page cache survives; power loss is what the fsync protocol is for, and that is
/// covered by the fault-injection tests.)
#[cfg(test)]
mod crash_tests {
    use super::*;
    use crate::incident::{Incident, IncidentSeverity};
    use serde_json::json;
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Command, Stdio};

    #[test]
    fn stores_are_send_and_sync() {
        fn shared_across_threads<T: Send + Sync>() {}
        shared_across_threads::<CheckpointStore>();
        shared_across_threads::<Journal>();
        shared_across_threads::<IncidentLog>();
        shared_across_threads::<Storage>();
    }

    const CHILD_ENV: &str = "HPC_HEALTH_DURABLE_CRASH_DIR";
    const CHILD_TEST: &str = "durable::crash_tests::crash_child";

    fn open_all(root: &Path) -> Result<(CheckpointStore, Journal, IncidentLog)> {
        let (store, skipped) = CheckpointStore::open(&root.join("ckpt"), 2, 1 << 20, Storage::new())?;
        assert!(skipped.is_empty(), "{skipped:?}");
        let (journal, problems) = Journal::open(&root.join("journal"), JournalOptions::default(), Storage::new())?;
        assert!(problems.iter().all(|p| p.kind == ProblemKind::TornTail), "{problems:?}");
        let options = IncidentLogOptions { segment_bytes: 4096, max_segments: 1000, ..Default::default() };
        let options = IncidentLogOptions { rate_limit: RateLimit { max: u32::MAX, window_ms: 1 }, ..options };
        let (log, problems) = IncidentLog::open(&root.join("incidents"), options, Storage::new())?;
        assert!(problems.iter().all(|p| p.kind == ProblemKind::TornTail), "{problems:?}");
        Ok((store, journal, log))
    }

    #[test]
    #[ignore = "the child of killed_writer_leaves_consistent_state"]
    fn crash_child() {
        let Ok(root) = std::env::var(CHILD_ENV) else { return };
        let (store, journal, log) = open_all(Path::new(&root)).unwrap();
        let start = journal
            .active_operations()
            .iter()
            .filter_map(|o| o.id.strip_prefix("op")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        for i in start + 1.. {
            let meta =
                store.write(json!({"i": i, "pad": "x".repeat((i % 300) as usize)}).to_string().as_bytes()).unwrap();
            println!("ckpt {}", meta.seq);
            journal.begin_operation(&format!("op{i}"), json!({"i": i})).unwrap();
            println!("begin {i}");
            if journal.active_operations().iter().any(|o| o.id == format!("op{}", i - 1)) {
                journal.end_operation(&format!("op{}", i - 1), json!(null)).unwrap();
                println!("end {}", i - 1);
            }
            let incident = Incident {
                kind: "k".into(),
                severity: IncidentSeverity::Info,
                message: format!("{i}"),
                details: json!(i),
            };
            if let RecordOutcome::Written { seq, .. } = log.record(incident).unwrap() {
                println!("incident {seq}");
            }
            if i % 7 == 0 {
                journal.compact().unwrap();
            }
        }
    }

    #[test]
    fn killed_writer_leaves_consistent_state() {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        for (round, kill_after) in [40usize, 173, 311].into_iter().enumerate() {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &state)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let mut acks: Vec<(String, u64)> = Vec::new();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            while acks.len() < kill_after {
                let line = lines.next().unwrap_or_else(|| panic!("round {round}: child ended early")).unwrap();
                if let Some((what, n)) = line.split_once(' ') {
                    if let Ok(n) = n.parse() {
                        acks.push((what.to_string(), n));
                    }
                }
            }
            // While it runs, the directories are locked against this process too.
            let locked = CheckpointStore::open(&state.join("ckpt"), 2, 1 << 20, Storage::new()).unwrap_err();
            assert_eq!(locked.code, ERR_CHECKPOINT_LOCKED);
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();

            let last = |what: &str| acks.iter().filter(|(w, _)| w == what).map(|&(_, n)| n).max();
            let (store, journal, log) = open_all(&state).unwrap();
            let latest = store.latest_valid().unwrap();
            assert!(latest.skipped.is_empty());
            assert!(latest.checkpoint.unwrap().meta.seq >= last("ckpt").unwrap(), "round {round}");

            let active: BTreeSet<u64> =
                journal.active_operations().iter().map(|o| o.id[2..].parse().unwrap()).collect();
            let ended: BTreeSet<u64> = acks.iter().filter(|(w, _)| w == "end").map(|&(_, n)| n).collect();
            assert!(active.is_disjoint(&ended), "round {round}: ended operations came back: {active:?}");
            let last_begin = last("begin").unwrap();
            assert!(
                active.contains(&last_begin) || ended.contains(&last_begin) || active.contains(&(last_begin + 1)),
                "round {round}: {active:?}"
            );

            let seqs: Vec<u64> = log.read(&ReadFilter::default()).unwrap().records.iter().map(|r| r.seq).collect();
            let last_incident = last("incident").unwrap();
            assert!(seqs.len() as u64 >= last_incident, "round {round}: acknowledged incidents lost");
            assert!(seqs.iter().enumerate().all(|(i, &s)| s == i as u64 + 1), "round {round}: gaps");
        }
    }
}
