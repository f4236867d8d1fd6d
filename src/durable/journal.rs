//! The operation journal: which long operations (recoveries, restarts) have begun and not
//! ended, durable before `begin_operation` / `end_operation` acknowledge, so that a
//! restarted process knows what was interrupted.
//!
//! The file format and replay rules are in [`super::format`]; the writing (group commit,
//! new files, failed appends) is [`super::log`]'s engine. Here: the record codec, when a
//! new file starts (compaction), and replay.
//!
//! Every journal file is self-contained: a new one is only ever started (on first open,
//! by compaction, or to recover from a failed append or a damaged file) holding the
//! `begin` records of all active operations, and older files are removed only after it is
//! durable. So replay reads the newest file alone; older ones are leftovers.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::defaults::{
    JOURNAL_COMPACT_AT_BYTES, MAX_JOURNAL_FILE_BYTES, MAX_JOURNAL_RECORD_BYTES, MAX_JSON_DEPTH, MAX_OPERATION_ID_BYTES,
};
use super::fs::{
    json_nesting_exceeds, open_state_dir, parse_json, set_aside, AppendFile, DurableError, ProblemKind,
    RecoveryProblem, Result, StateDir, Storage, ERR_CHECKPOINT_LOCKED, ERR_DUPLICATE, ERR_INVALID_ARGUMENT,
    ERR_INVALID_ID, ERR_INVALID_JSON, ERR_NOT_FOUND, ERR_TOO_LARGE,
};
use super::log::{Appended, GroupCommit, Inbox, LogFiles, LogWriter, NewFile, Pending, Reply};
use crate::sampling::unix_time_ms;
use crate::sync::lock;

const FILE_PREFIX: &str = "journal-";
const FILE_SUFFIX: &str = ".log";
const FRAME_HEADER_BYTES: usize = 8;

/// An operation that has begun and not ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveOperation {
    pub id: String,
    pub started_at_ms: u64,
    pub details: Value,
}

/// Limits of a journal; defaults from [`super::defaults`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// Largest record (JSON bytes of one frame).
    pub max_record_bytes: usize,
    /// Compact once the current file grows past this.
    pub compact_at_bytes: u64,
    /// Largest journal file read back on open.
    pub max_file_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            max_record_bytes: MAX_JOURNAL_RECORD_BYTES,
            compact_at_bytes: JOURNAL_COMPACT_AT_BYTES,
            max_file_bytes: MAX_JOURNAL_FILE_BYTES,
        }
    }
}

/// One journal record, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum JournalRecord {
    Begin { id: String, ts: u64, details: Value },
    End { id: String, ts: u64, result: Value },
}

type ActiveSet = BTreeMap<String, ActiveOperation>;

/// The operation journal in one locked directory.
pub struct Journal {
    engine: GroupCommit<JournalWriter>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("dir", &self.writer().files.dir.path()).finish_non_exhaustive()
    }
}

/// The journal's side of the engine: its files, what is durable, and the file appended to.
struct JournalWriter {
    files: LogFiles,
    options: JournalOptions,
    /// Operations whose `begin` is durable and whose `end` is not.
    committed: Mutex<ActiveSet>,
    /// Locked for the whole of a commit or a compaction (taken before `committed`).
    current: Mutex<CurrentFile>,
}

/// A record queued: checked, encoded.
struct Queued {
    record: JournalRecord,
    frame: Vec<u8>,
}

struct CurrentFile {
    /// Number of the newest journal file.
    number: u64,
    /// That file, open for appending; `None` once an append failed and starting a new
    /// file failed too: the next commit starts a new file from memory.
    file: Option<AppendFile>,
    /// Whether the file holds records a snapshot would drop (`end`s and the `begin`s they
    /// close); a file with none is already compact.
    compactable: bool,
}

impl Journal {
    /// Opens (creating) the journal in `dir` (locked; a second open is
    /// `ERR_CHECKPOINT_LOCKED`) and replays it. Returns what replay found wrong: a torn
    /// tail (truncated) or damage mid-file (the file set aside, a new one started with the
    /// operations recovered up to the damage).
    pub fn open(dir: &Path, options: JournalOptions, storage: Storage) -> Result<(Self, Vec<RecoveryProblem>)> {
        check_options(&options)?;
        Self::open_in(Arc::new(open_state_dir(dir, ERR_CHECKPOINT_LOCKED)?), options, storage)
    }

    /// As [`open`](Self::open), in a state directory already opened (and locked), e.g.
    /// the checkpoint directory.
    pub fn open_in(
        dir: Arc<StateDir>,
        options: JournalOptions,
        storage: Storage,
    ) -> Result<(Self, Vec<RecoveryProblem>)> {
        check_options(&options)?;
        let (files, mut problems) = LogFiles::open(storage, dir, FILE_PREFIX, FILE_SUFFIX, "journal file", false)?;
        let (committed, current, replay_problems) = recover(&files, &options)?;
        problems.extend(replay_problems);
        let projected: HashSet<String> = committed.keys().cloned().collect();
        let writer = JournalWriter { files, options, committed: Mutex::new(committed), current: Mutex::new(current) };
        let engine = GroupCommit::start("hpc-health-journal", writer, projected)?;
        Ok((Journal { engine }, problems))
    }

    fn writer(&self) -> &JournalWriter {
        self.engine.writer()
    }

    pub fn is_degraded(&self) -> bool {
        self.writer().files.storage.is_degraded()
    }

    /// Records that operation `id` began, durably. `ERR_INVALID_ID` (empty or over 256
    /// bytes), `ERR_DUPLICATE` (already active), `ERR_TOO_LARGE` / `ERR_INVALID_JSON`
    /// (details), `ERR_PERSIST_FAILED`.
    pub fn begin_operation(&self, id: &str, details: Value) -> Result<()> {
        self.queue_begin_operation(id, details)?.wait()
    }

    /// Records that operation `id` ended, durably. `ERR_NOT_FOUND` if it is not active.
    pub fn end_operation(&self, id: &str, result: Value) -> Result<()> {
        self.queue_end_operation(id, result)?.wait()
    }

    /// As [`begin_operation`](Self::begin_operation) without blocking: checks and queues
    /// the record (errors of the arguments come back here) and returns what settles once
    /// it is durable. Records are committed in the order they were queued.
    pub fn queue_begin_operation(&self, id: &str, details: Value) -> Result<Pending<()>> {
        self.queue(self.begin_record(id, details)?, |active| admit_begin(active, id))
    }

    /// As [`queue_begin_operation`](Self::queue_begin_operation), handing every outcome
    /// to `reply`: an argument error at once, on this thread; the commit's on the writer
    /// thread (keep it short: the next commit waits for it).
    pub fn queue_begin_operation_then(&self, id: &str, details: Value, reply: Reply<()>) {
        self.queue_then(self.begin_record(id, details), |active| admit_begin(active, id), reply)
    }

    /// As [`end_operation`](Self::end_operation) without blocking (see
    /// [`queue_begin_operation`](Self::queue_begin_operation)).
    pub fn queue_end_operation(&self, id: &str, result: Value) -> Result<Pending<()>> {
        self.queue(self.end_record(id, result)?, |active| admit_end(active, id))
    }

    /// As [`queue_end_operation`](Self::queue_end_operation), handing every outcome to
    /// `reply` (see [`queue_begin_operation_then`](Self::queue_begin_operation_then)).
    pub fn queue_end_operation_then(&self, id: &str, result: Value, reply: Reply<()>) {
        self.queue_then(self.end_record(id, result), |active| admit_end(active, id), reply)
    }

    /// Queues `queued` once `admit` accepts it against the operations projected active.
    fn queue(&self, queued: Queued, admit: impl FnOnce(&mut HashSet<String>) -> Result<()>) -> Result<Pending<()>> {
        self.engine.queue(|inbox| {
            admit(&mut inbox.admission)?;
            Ok(inbox.push(queued))
        })
    }

    /// As `queue`, every outcome (a bad record, a refusal, the commit's) going to `reply`.
    fn queue_then(
        &self,
        queued: Result<Queued>,
        admit: impl FnOnce(&mut HashSet<String>) -> Result<()>,
        reply: Reply<()>,
    ) {
        let queued = match queued {
            Ok(queued) => queued,
            Err(e) => return reply(Err(e)),
        };
        self.engine.queue(|inbox| match admit(&mut inbox.admission) {
            Ok(()) => inbox.push_then(queued, reply),
            Err(e) => reply(Err(e)),
        })
    }

    fn begin_record(&self, id: &str, details: Value) -> Result<Queued> {
        check_id(id)?;
        self.writer().queued(JournalRecord::Begin { id: id.to_string(), ts: unix_time_ms() as u64, details })
    }

    fn end_record(&self, id: &str, result: Value) -> Result<Queued> {
        check_id(id)?;
        self.writer().queued(JournalRecord::End { id: id.to_string(), ts: unix_time_ms() as u64, result })
    }

    /// The operations begun and not ended (durably), oldest first.
    pub fn active_operations(&self) -> Vec<ActiveOperation> {
        let mut ops: Vec<ActiveOperation> = lock(&self.writer().committed).values().cloned().collect();
        ops.sort_by(|a, b| (a.started_at_ms, &a.id).cmp(&(b.started_at_ms, &b.id)));
        ops
    }

    /// Starts a new journal file holding only the `begin` records of the active
    /// operations and removes the older ones. Called after a checkpoint; also done
    /// automatically when the file grows past `compact_at_bytes`.
    pub fn compact(&self) -> Result<()> {
        let writer = self.writer();
        let mut current = lock(&writer.current);
        // A file that is only the active set's `begin`s is compact already.
        if !current.compactable && current.file.is_some() {
            return Ok(());
        }
        let ops = lock(&writer.committed).clone();
        // If this fails, the current file is still intact and stays in use.
        writer.start_new_file(&mut current, &ops, NewFile::WithRetry)
    }
}

impl LogWriter for JournalWriter {
    type Entry = Queued;
    type Ack = ();
    /// The ids active once everything queued is committed: new calls are checked against
    /// this, so a duplicate or unknown id fails before anything is written.
    type Admission = HashSet<String>;

    fn commit(&self, batch: Vec<Queued>) -> Result<Vec<()>> {
        let mut current = lock(&self.current);
        self.append(&mut current, &batch)?;
        let mut committed = lock(&self.committed);
        let count = batch.len();
        for queued in batch {
            apply(&mut committed, queued.record);
        }
        Ok(vec![(); count])
    }

    /// Recomputes the projected ids from what is durable and re-checks the records queued
    /// meanwhile: one that relied on a failed record (the `end` of an operation whose
    /// `begin` failed) fails too, as it would have if called afterwards.
    fn after_failure(&self, inbox: &mut Inbox<Self>) {
        let mut projected: HashSet<String> = lock(&self.committed).keys().cloned().collect();
        inbox.reject_queued(|queued| match &queued.record {
            JournalRecord::Begin { id, .. } if !projected.insert(id.clone()) => {
                Some(DurableError::new(ERR_DUPLICATE, format!("operation {id:?} is already active")))
            }
            JournalRecord::End { id, .. } if !projected.remove(id) => Some(DurableError::new(
                ERR_NOT_FOUND,
                format!("operation {id:?} is not active (its begin failed to persist)"),
            )),
            _ => None,
        });
        inbox.admission = projected;
    }
}

impl JournalWriter {
    /// Serializes and checks a record.
    fn queued(&self, record: JournalRecord) -> Result<Queued> {
        let payload = serde_json::to_vec(&record).expect("journal records serialize");
        if payload.len() > self.options.max_record_bytes {
            return Err(DurableError::new(
                ERR_TOO_LARGE,
                format!(
                    "journal record of {} bytes is over the limit of {}",
                    payload.len(),
                    self.options.max_record_bytes
                ),
            ));
        }
        if json_nesting_exceeds(&payload, MAX_JSON_DEPTH) {
            return Err(DurableError::new(
                ERR_INVALID_JSON,
                format!("operation details/result nest deeper than {} levels", MAX_JSON_DEPTH - 1),
            ));
        }
        Ok(Queued { record, frame: encode_frame(&payload) })
    }

    /// Appends `batch` with one write and one fdatasync; after a failed append, or when
    /// no file is open, starts a new file holding the active set with the batch applied.
    fn append(&self, current: &mut CurrentFile, batch: &[Queued]) -> Result<()> {
        let after_batch = || {
            let mut ops = lock(&self.committed).clone();
            for queued in batch {
                apply(&mut ops, queued.record.clone());
            }
            ops
        };
        if current.file.is_none() {
            // The last append failed and so did its new file: try a new file again.
            return self.start_new_file(current, &after_batch(), NewFile::WithRetry);
        }
        let bytes: Vec<u8> = batch.iter().flat_map(|q| q.frame.iter().copied()).collect();
        match self.files.append(&mut current.file, &bytes) {
            Appended::InPlace => {
                current.compactable |= batch.iter().any(|q| matches!(q.record, JournalRecord::End { .. }));
                if current.file.as_ref().is_some_and(|file| file.len() > self.options.compact_at_bytes) {
                    // Best effort: on failure the current file stays in use.
                    let _ = self.start_new_file(current, &after_batch(), NewFile::WithRetry);
                }
                Ok(())
            }
            // Never append after a failed write or fsync: the file's tail is unknown.
            Appended::Failed(e) => self.start_new_file(current, &after_batch(), NewFile::RetryOf(&e)),
        }
    }

    /// Writes journal file `current.number + 1` holding the `begin` records of `ops`,
    /// switches to it, and removes the older files.
    fn start_new_file(&self, current: &mut CurrentFile, ops: &ActiveSet, mode: NewFile<'_>) -> Result<()> {
        write_snapshot(&self.files, current, ops, mode)?;
        self.files.remove_before(current.number);
        Ok(())
    }
}

/// Writes journal file `current.number + 1` with the `begin` records of `ops`, durably,
/// and switches `current` to it.
fn write_snapshot(files: &LogFiles, current: &mut CurrentFile, ops: &ActiveSet, mode: NewFile<'_>) -> Result<()> {
    let number = current.number + 1;
    let mut bytes = Vec::new();
    for op in ops.values() {
        let record = JournalRecord::Begin { id: op.id.clone(), ts: op.started_at_ms, details: op.details.clone() };
        bytes.extend(encode_frame(&serde_json::to_vec(&record).expect("journal records serialize")));
    }
    files.write_new(number, &bytes, mode)?;
    // The new file is the newest on disk from here on: never append to an older one,
    // even if opening this one fails (the next commit then starts yet another).
    current.number = number;
    current.compactable = false;
    current.file = None;
    current.file = Some(files.open_file(number)?);
    Ok(())
}

/// Replays the newest journal file and leaves it ready for appending (or starts the
/// first one).
fn recover(files: &LogFiles, options: &JournalOptions) -> Result<(ActiveSet, CurrentFile, Vec<RecoveryProblem>)> {
    let mut problems = Vec::new();
    let Some(&number) = files.numbers()?.last() else {
        let mut current = CurrentFile { number: 0, file: None, compactable: false };
        write_snapshot(files, &mut current, &ActiveSet::new(), NewFile::WithRetry)?;
        return Ok((ActiveSet::new(), current, problems));
    };
    let name = files.name(number);
    let bytes = files.storage.read_bounded(&files.dir, &name, options.max_file_bytes)?;
    let replay = replay(&bytes, options.max_record_bytes);
    problems.extend(replay.inconsistencies.into_iter().map(|(offset, reason)| RecoveryProblem {
        kind: ProblemKind::InconsistentRecord,
        file: name.clone(),
        offset,
        reason,
        set_aside_as: None,
    }));
    // What replay read may hold ended operations: compact at the first chance.
    let mut current = CurrentFile { number, file: None, compactable: true };
    match replay.damage {
        None => current.file = Some(files.open_file(number)?),
        Some(Damage { offset, reason, mid_file: false }) => {
            // An interrupted append: cut it off and carry on in the same file.
            let mut file = files.open_file(number)?;
            match file.truncate_to(&files.storage, offset) {
                Ok(()) => current.file = Some(file),
                Err(_) => write_snapshot(files, &mut current, &replay.ops, NewFile::WithRetry)?,
            }
            problems.push(RecoveryProblem {
                kind: ProblemKind::TornTail,
                file: name,
                offset,
                reason,
                set_aside_as: None,
            });
        }
        Some(Damage { offset, reason, mid_file: true }) => {
            // Not an interrupted write: keep what came before, set the file aside for
            // inspection. The new file first, so a crash in between loses nothing.
            write_snapshot(files, &mut current, &replay.ops, NewFile::WithRetry)?;
            let (set_aside_as, reason) = match set_aside(&files.storage, &files.dir, &name, FILE_PREFIX) {
                Ok(aside) => (Some(aside), reason),
                Err(e) => (None, format!("{reason} (could not set it aside: {e})")),
            };
            problems.push(RecoveryProblem {
                kind: ProblemKind::MidFileCorruption,
                file: name,
                offset,
                reason,
                set_aside_as,
            });
        }
    }
    files.remove_before(current.number);
    Ok((replay.ops, current, problems))
}

/// A `begin` of `id` is accepted unless `id` is active once everything queued commits.
fn admit_begin(projected: &mut HashSet<String>, id: &str) -> Result<()> {
    if !projected.insert(id.to_string()) {
        return Err(DurableError::new(ERR_DUPLICATE, format!("operation {id:?} is already active")));
    }
    Ok(())
}

/// An `end` of `id` is accepted if `id` is active once everything queued commits.
fn admit_end(projected: &mut HashSet<String>, id: &str) -> Result<()> {
    if !projected.remove(id) {
        return Err(DurableError::new(ERR_NOT_FOUND, format!("operation {id:?} is not active")));
    }
    Ok(())
}

fn check_options(options: &JournalOptions) -> Result<()> {
    if options.max_record_bytes < 64 || options.max_record_bytes > u32::MAX as usize || options.max_file_bytes == 0 {
        return Err(DurableError::new(ERR_INVALID_ARGUMENT, format!("journal options out of range: {options:?}")));
    }
    Ok(())
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_OPERATION_ID_BYTES {
        return Err(DurableError::new(
            ERR_INVALID_ID,
            format!("operation ids must be 1 to {MAX_OPERATION_ID_BYTES} bytes (got {})", id.len()),
        ));
    }
    Ok(())
}

fn apply(ops: &mut ActiveSet, record: JournalRecord) {
    match record {
        JournalRecord::Begin { id, ts, details } => {
            ops.insert(id.clone(), ActiveOperation { id, started_at_ms: ts, details });
        }
        JournalRecord::End { id, .. } => {
            ops.remove(&id);
        }
    }
}

#[cfg(test)]
fn file_name(number: u64) -> String {
    format!("{FILE_PREFIX}{number:020}{FILE_SUFFIX}")
}

fn frame_crc(len_bytes: &[u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload)
}

fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let len_bytes = (payload.len() as u32).to_le_bytes();
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&len_bytes);
    frame.extend_from_slice(&frame_crc(&len_bytes, payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The payload of the intact frame at `at` and where the next starts, or what is wrong.
fn read_frame(bytes: &[u8], at: usize, max_record_bytes: usize) -> std::result::Result<(&[u8], usize), String> {
    let rest = &bytes[at..];
    if rest.len() < FRAME_HEADER_BYTES {
        return Err(format!("incomplete frame header ({} bytes)", rest.len()));
    }
    let len_bytes: [u8; 4] = rest[..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len == 0 || len > max_record_bytes {
        return Err(format!("frame length {len} out of range"));
    }
    let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
        return Err(format!(
            "incomplete frame: {len} payload bytes announced, {} present",
            rest.len() - FRAME_HEADER_BYTES
        ));
    };
    if frame_crc(&len_bytes, payload) != u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) {
        return Err("frame CRC mismatch".into());
    }
    Ok((payload, at + FRAME_HEADER_BYTES + len))
}

/// Whether an intact frame starts anywhere in `bytes[from..]`: tells damage in the middle
/// of a file from a torn tail. Cheap checks first (length in range, fits, `{`), so the CRC
/// is only computed for plausible positions.
/// The search hashes at most this many bytes (a multiple of what is left to search):
/// crafted garbage could otherwise make every offset plausible and the search quadratic.
/// When the budget runs out the damage is taken as mid-file, the cautious reading: the file
/// is set aside and reported rather than cut.
const SEARCH_HASH_BUDGET_FACTOR: usize = 8;

fn intact_frame_after(bytes: &[u8], from: usize, max_record_bytes: usize) -> bool {
    let mut budget = bytes.len().saturating_sub(from).saturating_mul(SEARCH_HASH_BUDGET_FACTOR);
    (from..bytes.len().saturating_sub(FRAME_HEADER_BYTES)).any(|at| {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let plausible = len != 0
            && len <= max_record_bytes
            && at + FRAME_HEADER_BYTES + len <= bytes.len()
            && bytes[at + FRAME_HEADER_BYTES] == b'{';
        if !plausible {
            return false;
        }
        if budget < len {
            return true;
        }
        budget -= len;
        read_frame(bytes, at, max_record_bytes).is_ok()
    })
}

struct Damage {
    offset: u64,
    reason: String,
    /// Intact frames follow the damage: not a torn tail.
    mid_file: bool,
}

struct Replay {
    /// The operations active after the last good record.
    ops: ActiveSet,
    damage: Option<Damage>,
    /// Intact records that contradict earlier ones: (offset, reason). Ignored.
    inconsistencies: Vec<(u64, String)>,
}

fn replay(bytes: &[u8], max_record_bytes: usize) -> Replay {
    let mut ops = ActiveSet::new();
    let mut inconsistencies = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let record = read_frame(bytes, at, max_record_bytes)
            .and_then(|(payload, next)| parse_json::<JournalRecord>(payload, MAX_JSON_DEPTH).map(|r| (r, next)));
        let (record, next) = match record {
            Ok(found) => found,
            Err(reason) => {
                let mid_file = intact_frame_after(bytes, at + 1, max_record_bytes);
                return Replay { ops, damage: Some(Damage { offset: at as u64, reason, mid_file }), inconsistencies };
            }
        };
        let id = match &record {
            JournalRecord::Begin { id, .. } | JournalRecord::End { id, .. } => id,
        };
        // CRC-valid yet not something this writer writes (it refuses such ids): never apply it.
        if let Err(refused) = check_id(id) {
            inconsistencies.push((at as u64, format!("{}; record ignored", refused.message)));
            at = next;
            continue;
        }
        match &record {
            JournalRecord::Begin { id, .. } if ops.contains_key(id) => {
                inconsistencies.push((at as u64, format!("begin of {id:?}, already active; the later one kept")));
            }
            JournalRecord::End { id, .. } if !ops.contains_key(id) => {
                inconsistencies.push((at as u64, format!("end of {id:?}, which is not active; ignored")));
            }
            _ => {}
        }
        apply(&mut ops, record);
        at = next;
    }
    Replay { ops, damage: None, inconsistencies }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::checkpoint::CheckpointStore;
    use crate::durable::defaults::MAX_SEQUENCE;
    use crate::durable::fs::test_support::{mkfifo, names_in, swap_for_symlink, AddFault, FAULT_STEPS};
    use crate::durable::fs::{FaultPlan, IoOp, ERR_PERSIST_FAILED, TEMP_PREFIX};
    use serde_json::json;
    use std::fs;
    use std::path::PathBuf;
    use std::time::Duration;

    fn new_dir() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("journal");
        (root, dir)
    }

    fn open(dir: &Path) -> (Journal, Vec<RecoveryProblem>) {
        Journal::open(dir, JournalOptions::default(), Storage::new()).unwrap()
    }

    fn active_ids(journal: &Journal) -> Vec<String> {
        let mut ids: Vec<String> = journal.active_operations().into_iter().map(|o| o.id).collect();
        ids.sort();
        ids
    }

    fn journal_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(FILE_PREFIX))
            .collect();
        names.sort();
        names
    }

    fn only_journal_file(dir: &Path) -> PathBuf {
        let files = journal_files(dir);
        assert_eq!(files.len(), 1, "{files:?}");
        dir.join(&files[0])
    }

    #[test]
    fn round_trip_survives_reopen() {
        let (_root, dir) = new_dir();
        let (journal, problems) = open(&dir);
        assert!(problems.is_empty());
        journal.begin_operation("restart-gpu-0", json!({"gpu": 0})).unwrap();
        journal.begin_operation("drain", json!(null)).unwrap();
        journal.end_operation("restart-gpu-0", json!({"ok": true})).unwrap();
        let before = journal.active_operations();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].id, "drain");
        drop(journal);

        let (journal, problems) = open(&dir);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(journal.active_operations(), before);
        journal.end_operation("drain", json!("done")).unwrap();
        assert!(journal.active_operations().is_empty());
    }

    #[test]
    fn argument_errors() {
        let (_root, dir) = new_dir();
        let (journal, _) = open(&dir);
        journal.begin_operation("a", json!({})).unwrap();
        assert_eq!(journal.begin_operation("a", json!({})).unwrap_err().code, ERR_DUPLICATE);
        assert_eq!(journal.end_operation("b", json!({})).unwrap_err().code, ERR_NOT_FOUND);
        assert_eq!(journal.begin_operation("", json!({})).unwrap_err().code, ERR_INVALID_ID);
        assert_eq!(journal.begin_operation(&"x".repeat(257), json!({})).unwrap_err().code, ERR_INVALID_ID);
        journal.begin_operation(&"x".repeat(256), json!({})).unwrap();
        let deep: Value = serde_json::from_str(&("[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH))).unwrap();
        assert_eq!(journal.begin_operation("deep", deep).unwrap_err().code, ERR_INVALID_JSON);
        assert_eq!(
            journal.begin_operation("big", json!("x".repeat(MAX_JOURNAL_RECORD_BYTES))).unwrap_err().code,
            ERR_TOO_LARGE
        );
        // Refused calls leave nothing behind.
        assert_eq!(active_ids(&journal), vec!["a".to_string(), "x".repeat(256)]);
        assert!(journal.begin_operation("deep", json!(1)).is_ok());
    }

    #[test]
    fn replay_ignores_ids_the_writer_refuses() {
        // CRC-valid frames a writer of this journal never writes: an empty id and a 257-byte one.
        let (_root, dir) = new_dir();
        drop(open(&dir));
        let path = only_journal_file(&dir);
        let mut bytes = fs::read(&path).unwrap();
        for id in ["", &"x".repeat(257), "kept"] {
            let record = JournalRecord::Begin { id: id.to_string(), ts: 1, details: json!(null) };
            bytes.extend(encode_frame(&serde_json::to_vec(&record).unwrap()));
        }
        let end_empty = JournalRecord::End { id: String::new(), ts: 2, result: json!(null) };
        bytes.extend(encode_frame(&serde_json::to_vec(&end_empty).unwrap()));
        fs::write(&path, &bytes).unwrap();

        let (journal, problems) = open(&dir);
        assert_eq!(active_ids(&journal), vec!["kept".to_string()]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().all(|p| p.kind == ProblemKind::InconsistentRecord), "{problems:?}");
        assert!(problems[1].reason.contains("got 257"), "{problems:?}");
    }

    /// Three records: begin a, begin b, end a. Returns the file bytes and frame offsets.
    fn three_record_journal(dir: &Path) -> (Vec<u8>, Vec<usize>) {
        let (journal, _) = open(dir);
        let path = only_journal_file(dir);
        let mut offsets = vec![0];
        journal.begin_operation("a", json!({"n": 1})).unwrap();
        offsets.push(fs::metadata(&path).unwrap().len() as usize);
        journal.begin_operation("b", json!({"n": 2})).unwrap();
        offsets.push(fs::metadata(&path).unwrap().len() as usize);
        journal.end_operation("a", json!("ok")).unwrap();
        offsets.push(fs::metadata(&path).unwrap().len() as usize);
        (fs::read(&path).unwrap(), offsets)
    }

    /// Opens a copy of a damaged journal in a fresh directory.
    fn reopen_damaged(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, Journal, Vec<RecoveryProblem>) {
        let (root, dir) = new_dir();
        drop(open(&dir));
        fs::write(only_journal_file(&dir), bytes).unwrap();
        let (journal, problems) = open(&dir);
        (root, dir, journal, problems)
    }

    #[test]
    fn every_bit_flip_of_the_last_frame_is_a_torn_tail() {
        let (_root, dir) = new_dir();
        let (original, offsets) = three_record_journal(&dir);
        for bit in offsets[2] * 8..offsets[3] * 8 {
            let mut bytes = original.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let (_root, dir, journal, problems) = reopen_damaged(&bytes);
            assert_eq!(problems.len(), 1, "bit {bit}: {problems:?}");
            assert_eq!(problems[0].kind, ProblemKind::TornTail, "bit {bit}: {problems:?}");
            assert_eq!(problems[0].offset, offsets[2] as u64);
            assert_eq!(active_ids(&journal), ["a", "b"], "bit {bit}");
            assert_eq!(fs::read(only_journal_file(&dir)).unwrap(), original[..offsets[2]], "bit {bit}: truncated");
            journal.end_operation("b", json!(null)).unwrap();
            drop(journal);
            let (journal, problems) = open(&dir);
            assert!(problems.is_empty(), "bit {bit}: appends after the cut are clean");
            assert_eq!(active_ids(&journal), ["a"]);
        }
    }

    #[test]
    fn every_truncation_keeps_the_complete_frames() {
        let (_root, dir) = new_dir();
        let (original, offsets) = three_record_journal(&dir);
        let expected = |complete: usize| -> Vec<&str> {
            match complete {
                0 => vec![],
                1 => vec!["a"],
                2 => vec!["a", "b"],
                _ => vec!["b"],
            }
        };
        for len in 0..original.len() {
            let complete = offsets.iter().filter(|&&o| o <= len).count() - 1;
            let (_root, _dir, journal, problems) = reopen_damaged(&original[..len]);
            assert_eq!(active_ids(&journal), expected(complete), "length {len}");
            if offsets.contains(&len) {
                assert!(problems.is_empty(), "length {len}: {problems:?}");
            } else {
                assert_eq!(problems.len(), 1, "length {len}");
                assert_eq!(problems[0].kind, ProblemKind::TornTail, "length {len}");
            }
        }
    }

    #[test]
    fn every_bit_flip_of_a_middle_frame_is_mid_file_corruption() {
        let (_root, dir) = new_dir();
        let (original, offsets) = three_record_journal(&dir);
        for bit in offsets[1] * 8..offsets[2] * 8 {
            let mut bytes = original.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let (_root, dir, journal, problems) = reopen_damaged(&bytes);
            assert_eq!(problems.len(), 1, "bit {bit}: {problems:?}");
            let problem = &problems[0];
            assert_eq!(problem.kind, ProblemKind::MidFileCorruption, "bit {bit}: {problem:?}");
            assert_eq!(problem.offset, offsets[1] as u64);
            assert_eq!(active_ids(&journal), ["a"], "bit {bit}: replay stops at the damage");
            let aside = problem.set_aside_as.clone().unwrap();
            assert_eq!(fs::read(dir.join(&aside)).unwrap(), bytes, "bit {bit}: damaged file kept aside");
            assert_eq!(journal_files(&dir), [file_name(2)], "bit {bit}: new file");
            drop(journal);
            let (journal, problems) = open(&dir);
            assert!(problems.is_empty());
            assert_eq!(active_ids(&journal), ["a"]);
        }
    }

    #[test]
    fn compaction_keeps_only_active_begins() {
        let (_root, dir) = new_dir();
        let (journal, _) = open(&dir);
        for i in 0..10 {
            journal.begin_operation(&format!("op{i}"), json!({"i": i})).unwrap();
        }
        for i in 0..10 {
            if i % 2 == 0 {
                journal.end_operation(&format!("op{i}"), json!(null)).unwrap();
            }
        }
        let before = journal.active_operations();
        journal.compact().unwrap();
        assert_eq!(journal_files(&dir), ["journal-00000000000000000002.log"]);
        let (_, ops_in_file) = {
            let bytes = fs::read(only_journal_file(&dir)).unwrap();
            let replay = replay(&bytes, MAX_JOURNAL_RECORD_BYTES);
            assert!(replay.damage.is_none());
            (bytes, replay.ops)
        };
        assert_eq!(ops_in_file.len(), 5);
        journal.begin_operation("after", json!(1)).unwrap();
        drop(journal);
        let (journal, problems) = open(&dir);
        assert!(problems.is_empty());
        let mut expected = before;
        expected.extend(journal.active_operations().into_iter().filter(|o| o.id == "after"));
        assert_eq!(journal.active_operations(), expected);
    }

    #[test]
    fn compacts_by_itself_past_the_threshold() {
        let (_root, dir) = new_dir();
        let options = JournalOptions { compact_at_bytes: 2000, ..JournalOptions::default() };
        let (journal, _) = Journal::open(&dir, options, Storage::new()).unwrap();
        for i in 0..100 {
            journal.begin_operation(&format!("op{i}"), json!(i)).unwrap();
            journal.end_operation(&format!("op{i}"), json!(i)).unwrap();
        }
        let files = journal_files(&dir);
        assert_eq!(files.len(), 1);
        assert!(files[0] > file_name(1), "{files:?}");
        assert!(fs::metadata(dir.join(&files[0])).unwrap().len() <= 2000);
    }

    #[test]
    fn leftovers_are_cleaned_on_open() {
        let (_root, dir) = new_dir();
        let (journal, _) = open(&dir);
        journal.begin_operation("a", json!(1)).unwrap();
        journal.begin_operation("b", json!(2)).unwrap();
        journal.end_operation("b", json!(null)).unwrap();
        journal.compact().unwrap();
        drop(journal);
        // A crash after the new file was durable and before the old was removed:
        // the old one is stale (the newest holds everything) and goes.
        fs::write(dir.join(file_name(1)), encode_frame(br#"{"op":"begin","id":"stale","ts":1,"details":null}"#))
            .unwrap();
        fs::write(dir.join(format!("{TEMP_PREFIX}{}-1-1", file_name(3))), b"partial").unwrap();
        let (journal, problems) = open(&dir);
        assert!(problems.is_empty());
        assert_eq!(active_ids(&journal), ["a"]);
        assert_eq!(journal_files(&dir), [file_name(2)]);
        assert!(!dir.join(format!("{TEMP_PREFIX}{}-1-1", file_name(3))).exists());
    }

    #[test]
    fn a_compact_journal_is_not_rewritten() {
        let (_root, dir) = new_dir();
        let (journal, _) = open(&dir);
        journal.begin_operation("a", json!(1)).unwrap();
        journal.compact().unwrap();
        assert_eq!(journal_files(&dir), [file_name(1)], "only begins of active operations: nothing to drop");
        journal.end_operation("a", json!(null)).unwrap();
        journal.compact().unwrap();
        assert_eq!(journal_files(&dir), [file_name(2)]);
        assert!(active_ids(&journal).is_empty());
    }

    /// Records queued without a thread each (as the binding queues them) while one
    /// fdatasync runs all go into the next commit: one fdatasync for all of them.
    #[test]
    fn one_fdatasync_covers_everything_queued_during_the_previous_one() {
        let (_root, dir) = new_dir();
        let storage = Storage::with_faults(FaultPlan::new().delay(IoOp::Sync, Duration::from_millis(100)));
        let (journal, _) = Journal::open(&dir, JournalOptions::default(), storage.clone()).unwrap();
        let syncs_before = storage.op_count(IoOp::Sync);
        let first = journal.queue_begin_operation("first", json!(0)).unwrap();
        // The writer is inside the first commit's fdatasync (100 ms) once it counted it.
        while storage.op_count(IoOp::Sync) == syncs_before {
            std::thread::sleep(Duration::from_millis(1));
        }
        let rest: Vec<Pending<()>> =
            (0..63).map(|i| journal.queue_begin_operation(&format!("op{i}"), json!({"i": i})).unwrap()).collect();
        first.wait().unwrap();
        for pending in rest {
            pending.wait().unwrap();
        }
        assert_eq!(
            storage.op_count(IoOp::Sync) - syncs_before,
            2,
            "one for the first, one for the 63 queued meanwhile"
        );
        assert_eq!(journal.active_operations().len(), 64);
    }

    /// A record is acknowledged only once the fdatasync covering it has returned, and is
    /// then among the active operations.
    #[test]
    fn acknowledged_only_after_the_fdatasync() {
        use futures::FutureExt;
        let (_root, dir) = new_dir();
        let storage = Storage::with_faults(FaultPlan::new().delay(IoOp::Sync, Duration::from_millis(300)));
        let (journal, _) = Journal::open(&dir, JournalOptions::default(), storage.clone()).unwrap();
        let syncs_before = storage.op_count(IoOp::Sync);
        let mut pending = journal.queue_begin_operation("a", json!(1)).unwrap();
        while storage.op_count(IoOp::Sync) == syncs_before {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!((&mut pending).now_or_never().is_none(), "not acknowledged while its fdatasync runs");
        assert!(journal.active_operations().is_empty());
        pending.wait().unwrap();
        assert_eq!(active_ids(&journal), ["a"]);
        // Argument errors come back when queueing, before anything is written.
        assert_eq!(journal.queue_begin_operation("a", json!(2)).err().unwrap().code, ERR_DUPLICATE);
        assert_eq!(journal.queue_end_operation("b", json!(2)).err().unwrap().code, ERR_NOT_FOUND);
    }

    /// The synchronous calls park their thread rather than run an executor: they work
    /// from inside one (the RPC fuzzers drive handlers with `block_on`).
    #[test]
    fn synchronous_calls_work_inside_an_executor() {
        let (_root, dir) = new_dir();
        let (journal, _) = open(&dir);
        futures::executor::block_on(async { journal.begin_operation("a", json!(1)) }).unwrap();
        assert_eq!(active_ids(&journal), ["a"]);
    }

    /// Dropping the journal commits and acknowledges what is still queued.
    #[test]
    fn dropping_the_journal_commits_what_is_queued() {
        let (_root, dir) = new_dir();
        let storage = Storage::with_faults(FaultPlan::new().delay(IoOp::Sync, Duration::from_millis(20)));
        let (journal, _) = Journal::open(&dir, JournalOptions::default(), storage).unwrap();
        let pending: Vec<Pending<()>> =
            (0..10).map(|i| journal.queue_begin_operation(&format!("op{i}"), json!(i)).unwrap()).collect();
        drop(journal);
        for p in pending {
            p.wait().unwrap();
        }
        let (journal, problems) = open(&dir);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(journal.active_operations().len(), 10);
    }

    #[test]
    fn group_commit_shares_fsyncs() {
        let (_root, dir) = new_dir();
        // A disk where an fsync takes a while, so that callers pile up as on real disks.
        let storage = Storage::with_faults(FaultPlan::new().delay(IoOp::Sync, Duration::from_millis(5)));
        let (journal, _) = Journal::open(&dir, JournalOptions::default(), storage.clone()).unwrap();
        let journal = Arc::new(journal);
        let syncs_before = storage.op_count(IoOp::Sync);
        let barrier = Arc::new(std::sync::Barrier::new(64));
        let threads: Vec<_> = (0..64)
            .map(|i| {
                let (journal, barrier) = (journal.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    journal.begin_operation(&format!("op{i}"), json!({"i": i})).unwrap();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let syncs = storage.op_count(IoOp::Sync) - syncs_before;
        assert!(syncs < 64, "{syncs} fsyncs for 64 records");
        assert_eq!(journal.active_operations().len(), 64);
        drop(journal);
        let (journal, problems) = open(&dir);
        assert!(problems.is_empty());
        assert_eq!(journal.active_operations().len(), 64);
    }

    /// A failed append (any step) starts a new file from memory, once; a second failure is
    /// ERR_PERSIST_FAILED with degraded set, and the journal carries on afterwards.
    #[test]
    fn failed_appends_start_a_new_file_once() {
        let append_steps: [(&str, AddFault); 3] = [
            ("write", |p, n| p.fail(IoOp::Write, n)),
            ("enospc", |p, n| p.no_space_on_write(n)),
            ("fdatasync", |p, n| p.fail(IoOp::Sync, n)),
        ];
        for (append_step, fail_append) in append_steps {
            // One failure: absorbed by the new file.
            let (_root, dir) = new_dir();
            let storage = Storage::new();
            let (journal, _) = Journal::open(&dir, JournalOptions::default(), storage.clone()).unwrap();
            journal.begin_operation("a", json!(1)).unwrap();
            storage.set_fault_plan(fail_append(FaultPlan::new(), 1));
            journal.begin_operation("b", json!(2)).unwrap();
            assert!(!storage.is_degraded(), "{append_step}");
            assert_eq!(journal_files(&dir), [file_name(2)], "{append_step}: switched to a new file");
            journal.begin_operation("c", json!(3)).unwrap();
            drop(journal);
            let (journal, problems) = open(&dir);
            assert!(problems.is_empty(), "{append_step}: {problems:?}");
            assert_eq!(active_ids(&journal), ["a", "b", "c"]);

            // Two failures: the append, then each step of writing the new file.
            for (file_step, fail_nth) in FAULT_STEPS {
                let (_root, dir) = new_dir();
                let storage = Storage::new();
                let (journal, _) = Journal::open(&dir, JournalOptions::default(), storage.clone()).unwrap();
                journal.begin_operation("a", json!(1)).unwrap();
                // The append uses step 1 of its kind; the new file's step of `file_step`
                // kind is the next one of that kind.
                let append_uses = |step: &str| match step {
                    "write" | "enospc" => 1,
                    "fsync" if append_step == "fdatasync" => 1,
                    _ => 0,
                };
                storage.set_fault_plan(fail_nth(fail_append(FaultPlan::new(), 1), 1 + append_uses(file_step)));
                let err = journal.begin_operation("b", json!(2)).unwrap_err();
                assert_eq!(err.code, ERR_PERSIST_FAILED, "{append_step} then {file_step}");
                assert!(journal.is_degraded());
                assert_eq!(active_ids(&journal), ["a"], "{append_step} then {file_step}");
                let temps = fs::read_dir(&dir)
                    .unwrap()
                    .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(TEMP_PREFIX))
                    .count();
                assert_eq!(temps, 0, "{append_step} then {file_step}");
                // The disk recovers: the next call starts a new file from memory.
                storage.clear_fault_plan();
                assert_eq!(journal.end_operation("b", json!(null)).unwrap_err().code, ERR_NOT_FOUND);
                journal.begin_operation("c", json!(3)).unwrap();
                assert!(!journal.is_degraded(), "{append_step} then {file_step}: persisting again");
                drop(journal);
                let (journal, problems) = open(&dir);
                assert!(problems.iter().all(|p| p.kind == ProblemKind::TornTail), "{problems:?}");
                assert_eq!(active_ids(&journal), ["a", "c"], "{append_step} then {file_step}");
            }
        }
    }

    /// A record queued behind a failing commit that relied on it fails too.
    #[test]
    fn queued_records_are_rechecked_after_a_failed_commit() {
        let (_root, dir) = new_dir();
        let storage = Storage::new();
        let (journal, _) = Journal::open(&dir, JournalOptions::default(), storage.clone()).unwrap();
        let journal = Arc::new(journal);
        storage.set_fault_plan(
            FaultPlan::new().fail(IoOp::Sync, 1).fail(IoOp::Sync, 2).delay(IoOp::Sync, Duration::from_millis(200)),
        );
        let leader = {
            let journal = journal.clone();
            std::thread::spawn(move || journal.begin_operation("x", json!(1)))
        };
        std::thread::sleep(Duration::from_millis(50));
        // `x` is projected active, so this is accepted and queued behind the failing write.
        let follower = journal.end_operation("x", json!(null));
        assert_eq!(leader.join().unwrap().unwrap_err().code, ERR_PERSIST_FAILED);
        assert_eq!(follower.unwrap_err().code, ERR_NOT_FOUND);
        assert!(journal.active_operations().is_empty());
    }

    /// A directory replaced by a symlink after open: appends, new files (compaction) and
    /// the removal of older ones stay in the directory that was checked and locked.
    #[test]
    fn new_files_land_in_the_directory_checked_at_open() {
        let (_root, dir) = new_dir();
        let (journal, _) = open(&dir);
        journal.begin_operation("a", json!(1)).unwrap();
        let (moved, elsewhere) = swap_for_symlink(&dir);
        fs::write(elsewhere.join(file_name(1)), b"theirs").unwrap();

        journal.begin_operation("b", json!(2)).unwrap();
        journal.end_operation("a", json!(null)).unwrap();
        journal.compact().unwrap(); // writes journal 2, removes journal 1
        journal.begin_operation("c", json!(3)).unwrap();
        assert_eq!(names_in(&elsewhere), [file_name(1)], "nothing written or removed through the symlink");
        assert_eq!(fs::read(elsewhere.join(file_name(1))).unwrap(), b"theirs");
        assert_eq!(journal_files(&moved), [file_name(2)]);
        drop(journal);
        let (journal, problems) = open(&moved);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(active_ids(&journal), ["b", "c"]);
    }

    /// The issue's reproduction: a symlink named like the newest journal file made the
    /// open fail with ERR_IO.
    #[test]
    fn a_symlink_named_like_the_newest_journal_file_does_not_fail_the_open() {
        let (root, dir) = new_dir();
        let (journal, _) = open(&dir);
        journal.begin_operation("a", json!(1)).unwrap();
        drop(journal);
        fs::write(root.path().join("outside"), b"").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside"), dir.join(file_name(2))).unwrap();
        let (journal, problems) = open(&dir);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!((problems[0].kind, problems[0].file.as_str()), (ProblemKind::ForeignFile, &*file_name(2)));
        assert_eq!(active_ids(&journal), ["a"]);
    }

    /// The writer keeps to the bound it enforces on open: a journal file numbered past it
    /// would be set aside as not ours on the next open, so it is never started.
    #[test]
    fn the_writer_refuses_a_file_number_past_the_bound() {
        let (_root, dir) = new_dir();
        drop(open(&dir));
        fs::remove_file(dir.join(file_name(1))).unwrap();
        fs::write(dir.join(file_name(MAX_SEQUENCE)), b"").unwrap();
        let (journal, problems) = open(&dir);
        assert!(problems.is_empty(), "{problems:?}");
        journal.begin_operation("a", json!(1)).unwrap();
        journal.end_operation("a", json!(null)).unwrap();
        assert_eq!(journal.compact().unwrap_err().code, ERR_INVALID_ARGUMENT);
        assert_eq!(journal_files(&dir), [file_name(MAX_SEQUENCE)]);
        journal.begin_operation("b", json!(2)).unwrap();
        drop(journal);
        let (journal, _) = open(&dir);
        assert_eq!(active_ids(&journal), ["b"], "still appending to the file at the bound");
    }

    /// What sits under a journal name without being a journal file this writer wrote (a
    /// symlink, FIFO, directory, a number past the bound or 0, a malformed name) no longer
    /// fails the open: it is set aside and reported, and the journal carries on.
    #[test]
    fn foreign_files_under_journal_names_are_set_aside() {
        let (root, dir) = new_dir();
        let (journal, _) = open(&dir);
        journal.begin_operation("a", json!(1)).unwrap();
        drop(journal);
        let outside = root.path().join("outside");
        fs::write(&outside, b"not ours").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join(file_name(9))).unwrap();
        mkfifo(&dir.join(file_name(8)));
        fs::create_dir(dir.join(file_name(7))).unwrap();
        let planted = ["journal-18446744073709551615.log", "journal-00000000000000000000.log", "journal-3.log"];
        for name in planted {
            fs::write(dir.join(name), b"").unwrap();
        }

        let (journal, problems) = open(&dir);
        let mut reported: Vec<&str> = problems.iter().map(|p| p.file.as_str()).collect();
        reported.sort();
        let mut expected: Vec<String> = planted.iter().map(|n| n.to_string()).collect();
        expected.extend([file_name(7), file_name(8), file_name(9)]);
        expected.sort();
        assert_eq!(reported, expected, "{problems:?}");
        assert!(problems.iter().all(|p| p.kind == ProblemKind::ForeignFile && p.set_aside_as.is_some()));
        assert_eq!(active_ids(&journal), ["a"]);
        journal.begin_operation("b", json!(2)).unwrap();
        journal.compact().unwrap();
        assert_eq!(journal_files(&dir), [file_name(2)]);
        assert_eq!(fs::read(&outside).unwrap(), b"not ours", "target untouched");
        drop(journal);
        let (journal, problems) = open(&dir);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(active_ids(&journal), ["a", "b"]);
    }

    #[test]
    fn locked_and_shared_with_checkpoints() {
        let (_root, dir) = new_dir();
        let (_journal, _) = open(&dir);
        assert_eq!(
            Journal::open(&dir, JournalOptions::default(), Storage::new()).unwrap_err().code,
            ERR_CHECKPOINT_LOCKED
        );
        drop(_journal);

        let state_dir = Arc::new(open_state_dir(&dir, ERR_CHECKPOINT_LOCKED).unwrap());
        let (store, _) = CheckpointStore::open_in(state_dir.clone(), 2, 1 << 20, Storage::new()).unwrap();
        let (journal, _) = Journal::open_in(state_dir, JournalOptions::default(), Storage::new()).unwrap();
        journal.begin_operation("a", json!(1)).unwrap();
        store.write(br#"{"state":1}"#).unwrap();
        journal.compact().unwrap();
        assert_eq!(store.latest_valid().unwrap().checkpoint.unwrap().payload, br#"{"state":1}"#);
        assert_eq!(active_ids(&journal), ["a"]);
    }
}
