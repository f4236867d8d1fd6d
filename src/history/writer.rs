//! Recording the history: samples are folded into the open bucket of each tier in memory;
//! a bucket is written (one append, one fdatasync, on the writer thread of the log engine)
//! when the first sample of a later bucket arrives, or on close. So at most one record per
//! source and step reaches the disk however often checks run, and the caller never waits
//! for the disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::policy::{HistoryPolicy, Tier, MAX_FILE_BYTES};
use super::record::{Record, Source, RECORD_BYTES};
use crate::durable::fs::{
    open_state_dir, AppendFile, DurableError, ProblemKind, RecoveryProblem, Result, StateDir, Storage,
    ERR_HISTORY_LOCKED,
};
use crate::durable::log::{Appended, GroupCommit, LogFiles, LogWriter, NewFile};
use crate::sync::lock;

/// Suffix of every history file.
pub const SUFFIX: &str = ".rec";

/// The history being recorded into a directory (locked while this lives).
pub struct HistoryWriter {
    policy: HistoryPolicy,
    buckets: Mutex<[Option<Bucket>; 2]>,
    commit: Option<GroupCommit<TierFiles>>,
    /// The last write failure, until taken.
    failure: Arc<Mutex<Option<DurableError>>>,
}

/// A bucket being filled: one record per source.
struct Bucket {
    start_ms: u64,
    records: BTreeMap<Source, Record>,
}

/// A closed bucket on its way to disk.
struct Written {
    tier: usize,
    start_ms: u64,
    sources: u64,
    bytes: Vec<u8>,
}

struct TierFiles {
    tiers: [Mutex<TierState>; 2],
}

struct TierState {
    tier: Tier,
    files: LogFiles,
    current: Option<AppendFile>,
    /// The number (first bucket) of the current file, and the newest file's.
    current_number: u64,
    newest: u64,
    /// The most sources a bucket has had: sizes the file cap.
    sources_max: u64,
}

impl HistoryWriter {
    /// Opens (creating) the history in `dir` and locks it (`ERR_HISTORY_LOCKED` if another
    /// writer holds it). A torn tail of each tier's newest file (an append cut short by a
    /// crash: a partial record, or whole ones that fail their CRC) is cut off; what was
    /// cut and anything foreign set aside is returned.
    pub fn open(path: &Path, policy: HistoryPolicy, storage: Storage) -> Result<(Self, Vec<RecoveryProblem>)> {
        let dir = Arc::new(open_state_dir(path, ERR_HISTORY_LOCKED)?);
        let mut problems = Vec::new();
        let mut open_tier = |tier: Tier| -> Result<TierState> {
            let (files, foreign) =
                LogFiles::open(storage.clone(), dir.clone(), tier.prefix, SUFFIX, "history file", true)?;
            problems.extend(foreign);
            let mut state = TierState { tier, files, current: None, current_number: 0, newest: 0, sources_max: 1 };
            if let Some(&newest) = state.files.numbers()?.last() {
                state.newest = newest;
                if let Some(problem) = state.resume(newest, &dir)? {
                    problems.push(problem);
                }
            }
            Ok(state)
        };
        let tiers = [Mutex::new(open_tier(policy.fine)?), Mutex::new(open_tier(policy.coarse)?)];
        let commit = GroupCommit::start("hpc-health-history", TierFiles { tiers }, ())?;
        let writer =
            HistoryWriter { policy, buckets: Mutex::new([None, None]), commit: Some(commit), failure: Arc::default() };
        Ok((writer, problems))
    }

    /// Folds one check's records (all for the bucket holding `at_ms`) in; writes the
    /// buckets this closes, without waiting for the disk.
    pub fn record(&self, at_ms: u64, records: Vec<Record>) {
        let mut buckets = lock(&self.buckets);
        let fine = self.policy.fine.step_ms;
        let start = at_ms - at_ms % fine;
        if buckets[0].as_ref().is_some_and(|b| b.start_ms != start) {
            let closed = buckets[0].take();
            self.close(&mut buckets, closed);
        }
        let bucket = buckets[0].get_or_insert_with(|| Bucket { start_ms: start, records: BTreeMap::new() });
        for mut record in records {
            record.step_ms = fine as u32;
            record.start_ms = start;
            fold_into(&mut bucket.records, record);
        }
    }

    /// Writes the open buckets (partial) without waiting for the disk. A later sample in
    /// the same bucket writes it again; readers fold the two.
    pub fn write_open_buckets(&self) {
        let mut buckets = lock(&self.buckets);
        let fine = buckets[0].take();
        self.close(&mut buckets, fine);
        if let Some(coarse) = buckets[1].take() {
            self.write(1, coarse);
        }
    }

    /// Writes the open buckets (partial) and waits until they are durable.
    pub fn flush(&self) -> Result<()> {
        self.write_open_buckets();
        if let Some(commit) = &self.commit {
            commit.queue(|inbox| inbox.push(Written { tier: 0, start_ms: 0, sources: 0, bytes: Vec::new() })).wait()?;
        }
        match self.take_failure() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The last write failure since the last call (the caller reports it).
    pub fn take_failure(&self) -> Option<DurableError> {
        lock(&self.failure).take()
    }

    /// Writes a closed fine bucket and folds it into the coarse one, writing that if the
    /// fine bucket starts a new one.
    fn close(&self, buckets: &mut [Option<Bucket>; 2], fine: Option<Bucket>) {
        let Some(fine) = fine else { return };
        let coarse_step = self.policy.coarse.step_ms;
        let coarse_start = fine.start_ms - fine.start_ms % coarse_step;
        if buckets[1].as_ref().is_some_and(|b| b.start_ms != coarse_start) {
            if let Some(done) = buckets[1].take() {
                self.write(1, done);
            }
        }
        let coarse = buckets[1].get_or_insert_with(|| Bucket { start_ms: coarse_start, records: BTreeMap::new() });
        for record in fine.records.values() {
            let mut record = record.clone();
            record.step_ms = coarse_step as u32;
            record.start_ms = coarse_start;
            fold_into(&mut coarse.records, record);
        }
        self.write(0, fine);
    }

    fn write(&self, tier: usize, bucket: Bucket) {
        let mut bytes = Vec::with_capacity(bucket.records.len() * RECORD_BYTES);
        for record in bucket.records.values() {
            record.encode(&mut bytes);
        }
        let entry = Written { tier, start_ms: bucket.start_ms, sources: bucket.records.len() as u64, bytes };
        let failure = self.failure.clone();
        if let Some(commit) = &self.commit {
            commit.queue(|inbox| {
                inbox.push_then(
                    entry,
                    Box::new(move |outcome: Result<()>| {
                        if let Err(error) = outcome {
                            *lock(&failure) = Some(error);
                        }
                    }),
                )
            });
        }
    }
}

impl Drop for HistoryWriter {
    /// Writes the open buckets, then joins the writer thread (it commits all queued).
    fn drop(&mut self) {
        self.write_open_buckets();
        self.commit.take();
    }
}

fn fold_into(records: &mut BTreeMap<Source, Record>, record: Record) {
    match records.get_mut(&record.source) {
        Some(existing) => existing.fold(&record),
        None => {
            records.insert(record.source, record);
        }
    }
}

impl LogWriter for TierFiles {
    type Entry = Written;
    type Ack = ();
    type Admission = ();

    fn commit(&self, batch: Vec<Written>) -> Result<Vec<()>> {
        let count = batch.len();
        let mut failure = None;
        for entry in batch {
            if entry.bytes.is_empty() {
                continue; // a flush marker
            }
            if let Err(error) = lock(&self.tiers[entry.tier]).append(&entry) {
                failure = Some(error);
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(vec![(); count]),
        }
    }
}

impl TierState {
    /// Cuts the torn tail of file `number` and continues it.
    fn resume(&mut self, number: u64, dir: &StateDir) -> Result<Option<RecoveryProblem>> {
        let name = self.files.name(number);
        let Ok(bytes) = self.files.storage.read_bounded(dir, &name, MAX_FILE_BYTES) else {
            return Ok(None); // unreadable or too big: the next bucket starts a new file
        };
        let keep = intact_prefix_len(&bytes);
        let mut file = self.files.open_file(number)?;
        let mut problem = None;
        if keep < bytes.len() {
            file.truncate_to(&self.files.storage, keep as u64)
                .map_err(|e| DurableError::io(format!("cutting the torn tail of {name}"), &e))?;
            problem = Some(RecoveryProblem {
                kind: ProblemKind::TornTail,
                file: name,
                offset: keep as u64,
                reason: format!("cut {} bytes of an interrupted append", bytes.len() - keep),
                set_aside_as: None,
            });
        }
        self.current = Some(file);
        self.current_number = number;
        Ok(problem)
    }

    fn append(&mut self, entry: &Written) -> Result<()> {
        self.sources_max = self.sources_max.max(entry.sources);
        let span = self.tier.span_ms();
        let cap = self.tier.file_cap_bytes(self.sources_max);
        let same_file = self.current.as_ref().is_some_and(|file| {
            // A clock that went back keeps appending here (until the cap): file numbers
            // only grow.
            let in_span = entry.start_ms / span == self.current_number / span || entry.start_ms < self.current_number;
            in_span && file.len() + entry.bytes.len() as u64 <= cap
        });
        if same_file {
            match self.files.append(&mut self.current, &entry.bytes) {
                Appended::InPlace => return Ok(()),
                Appended::Failed(error) => return self.start_file(entry, NewFile::RetryOf(&error)),
            }
        }
        self.start_file(entry, NewFile::WithRetry)
    }

    fn start_file(&mut self, entry: &Written, mode: NewFile<'_>) -> Result<()> {
        self.current = None;
        let number = entry.start_ms.max(self.newest + 1).max(1);
        self.files.write_new(number, &entry.bytes, mode)?;
        self.newest = number;
        self.current_number = number;
        self.current = Some(self.files.open_file(number)?);
        self.remove_old();
        Ok(())
    }

    /// Removes the files beyond the newest `max_files`: the retention, and the disk bound.
    /// By count, not by age: one bucket dated far ahead (a clock set wrong, then corrected)
    /// must not make every file before it look expired.
    fn remove_old(&self) {
        let Ok(numbers) = self.files.numbers() else { return };
        let excess = numbers.len().saturating_sub(self.tier.max_files() as usize);
        self.files.remove(numbers[..excess].to_vec());
    }
}

/// How many leading bytes of a history file are whole records, with the trailing ones
/// that fail their check (a torn append) left out. Damage with intact records after it
/// is not a torn tail: it stays, and readers skip it.
pub(crate) fn intact_prefix_len(bytes: &[u8]) -> usize {
    let mut len = bytes.len() - bytes.len() % RECORD_BYTES;
    while len > 0 && Record::decode(&bytes[len - RECORD_BYTES..len]).is_none() {
        len -= RECORD_BYTES;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::fs::ERR_HISTORY_LOCKED;
    use crate::history::reader::read_history;
    use crate::history::record::{GpuSignal, HostSignal, Stat};
    use std::fs;

    const STEP: u64 = 1000;

    fn policy() -> HistoryPolicy {
        HistoryPolicy::with_step(STEP)
    }

    /// The host and `gpus` GPUs, GPU memory `used` MiB.
    fn check(used: u32, gpus: u8) -> Vec<Record> {
        let mut host = Record::new(Source::Host, 1, 0);
        host.set(HostSignal::Issues as usize, Some(used % 3));
        let mut records = vec![host];
        for g in 0..gpus {
            let mut gpu = Record::new(Source::Gpu(g), 1, 0);
            gpu.set(GpuSignal::MemoryUsedMib as usize, Some(used));
            records.push(gpu);
        }
        records
    }

    fn files(dir: &Path, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names
    }

    /// Many checks a step make one record per source and step, min/max/last over them;
    /// the coarse tier folds the fine buckets; the reader reads it all back while the
    /// writer still holds the lock.
    #[test]
    fn records_downsample_and_read_back_without_the_lock() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("history");
        let (writer, problems) = HistoryWriter::open(&path, policy(), Storage::new()).unwrap();
        assert!(problems.is_empty());
        let t0 = 1_000_000 * STEP;
        // 10 checks a step for 3 steps: memory 0..30.
        for i in 0..30u32 {
            writer.record(t0 + u64::from(i) * STEP / 10, check(i, 2));
        }
        writer.flush().unwrap();
        let err = HistoryWriter::open(&path, policy(), Storage::new()).err().unwrap();
        assert_eq!(err.code, ERR_HISTORY_LOCKED, "one writer at a time");

        let read = read_history(&path, 0, &policy()).unwrap();
        assert_eq!(read.skipped, 0);
        let gpu1: Vec<&Record> = read.records.iter().filter(|r| r.source == Source::Gpu(1)).collect();
        assert_eq!(gpu1.len(), 3, "one record a step: {gpu1:?}");
        assert_eq!(gpu1[1].start_ms, t0 + STEP);
        assert_eq!(gpu1[1].samples, 10);
        assert_eq!(gpu1[1].stat(GpuSignal::MemoryUsedMib as usize), Some(Stat { min: 10, max: 19, last: 19 }));
        let on_disk = fs::metadata(path.join(&files(&path, "history-fine-")[0])).unwrap().len();
        assert_eq!(on_disk, 3 * 3 * RECORD_BYTES as u64, "3 steps of 3 sources");

        // The coarse tier has one bucket of all 30 (flushed, partial).
        let coarse = files(&path, "history-coarse-");
        let bytes = fs::read(path.join(&coarse[0])).unwrap();
        let gpu0 = bytes.chunks(RECORD_BYTES).filter_map(Record::decode).find(|r| r.source == Source::Gpu(0)).unwrap();
        assert_eq!((gpu0.samples, u64::from(gpu0.step_ms)), (30, 30 * STEP));
        assert_eq!(gpu0.stat(0), Some(Stat { min: 0, max: 29, last: 29 }));

        // `since` leaves out buckets that ended before it.
        let later = read_history(&path, t0 + 2 * STEP, &policy()).unwrap();
        assert!(later.records.iter().all(|r| r.start_ms == t0 + 2 * STEP), "{later:?}");
    }

    /// Beyond the fine tier's retention the coarse tier answers; and writing far longer
    /// than both retentions, with a restart in every bucket, stays within the bound.
    #[test]
    fn disk_use_stays_within_the_bound() {
        let small = HistoryPolicy {
            fine: Tier { prefix: "history-fine-", step_ms: 100, retention_steps: 20, file_steps: 5 },
            coarse: Tier { prefix: "history-coarse-", step_ms: 400, retention_steps: 20, file_steps: 4 },
        };
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("history");
        let gpus = 3;
        let mut t = 1_000_000u64;
        for round in 0..40 {
            let (writer, _) = HistoryWriter::open(&path, small, Storage::new()).unwrap();
            for _ in 0..10 {
                writer.record(t, check(round, gpus));
                t += 50;
            }
            drop(writer); // writes the open (partial) buckets: restarts within a bucket
            let total: u64 = fs::read_dir(&path).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
            assert!(total <= small.disk_bound_bytes(u32::from(gpus)), "round {round}: {total} bytes");
        }
        assert!(files(&path, "history-fine-").len() as u64 <= small.fine.max_files());
        let read = read_history(&path, 0, &small).unwrap();
        let oldest_fine = read.records.iter().filter(|r| r.step_ms == 100).map(|r| r.start_ms).min().unwrap();
        let coarse: Vec<&Record> = read.records.iter().filter(|r| r.step_ms == 400).collect();
        assert!(!coarse.is_empty(), "older than the fine tier keeps: the coarse tier");
        assert!(coarse.iter().all(|r| r.start_ms + 400 <= oldest_fine));
    }

    /// After the clock went back, a file holds buckets older than its name: a reader's
    /// `since` still finds every bucket that ends after it.
    #[test]
    fn a_clock_going_back_hides_nothing_from_since() {
        let small = HistoryPolicy {
            fine: Tier { prefix: "history-fine-", step_ms: 100, retention_steps: 20, file_steps: 2 },
            coarse: Tier { prefix: "history-coarse-", step_ms: 200, retention_steps: 20, file_steps: 2 },
        };
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("history");
        let (writer, _) = HistoryWriter::open(&path, small, Storage::new()).unwrap();
        for i in 0..10 {
            writer.record(10_000 + i * 100, check(1, 1));
        }
        for i in 0..40 {
            writer.record(1_000 + i * 100, check(2, 1)); // the clock went back 9 s
        }
        writer.flush().unwrap();
        let read = read_history(&path, 10_850, &small).unwrap();
        let mut fine: Vec<u64> = read.records.iter().filter(|r| r.step_ms == 100).map(|r| r.start_ms).collect();
        fine.sort_unstable();
        assert_eq!(fine, [10_800, 10_800, 10_900, 10_900], "host and GPU of the last two buckets");
    }

    /// An append cut short (a partial record, or a whole one failing its CRC) is cut off
    /// on open; the reader skips it before that; damage before intact records stays and
    /// is skipped.
    #[test]
    fn a_torn_tail_is_cut_on_open_and_skipped_by_readers() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("history");
        let t0 = 5_000_000;
        {
            let (writer, _) = HistoryWriter::open(&path, policy(), Storage::new()).unwrap();
            for i in 0..4 {
                writer.record(t0 + i * STEP, check(i as u32, 1));
            }
        }
        let name = files(&path, "history-fine-")[0].clone();
        let file = path.join(&name);
        let mut bytes = fs::read(&file).unwrap();
        assert_eq!(bytes.len(), 8 * RECORD_BYTES);
        // Damage the second record (mid-file) and the last, then tear half a record on.
        bytes[RECORD_BYTES + 20] ^= 1;
        let last = bytes.len() - 10;
        bytes[last] ^= 0x80;
        let torn = bytes[..RECORD_BYTES / 2].to_owned();
        bytes.extend_from_slice(&torn);
        fs::write(&file, &bytes).unwrap();

        let read = read_history(&path, 0, &policy()).unwrap();
        assert_eq!(read.skipped, 2, "the damaged record and the torn last whole one");
        assert_eq!(read.records.iter().filter(|r| r.step_ms == STEP as u32).count(), 6);

        let (writer, problems) = HistoryWriter::open(&path, policy(), Storage::new()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, ProblemKind::TornTail);
        assert_eq!(problems[0].offset, 7 * RECORD_BYTES as u64);
        assert_eq!(fs::metadata(&file).unwrap().len(), 7 * RECORD_BYTES as u64);
        writer.record(t0 + 4 * STEP, check(9, 1));
        writer.flush().unwrap();
        assert_eq!(fs::metadata(&file).unwrap().len(), 9 * RECORD_BYTES as u64, "appended after the cut");
        assert_eq!(read_history(&path, 0, &policy()).unwrap().skipped, 1, "the mid-file damage stays skipped");
    }

    /// A clock set a month ahead for one bucket, then corrected: what was recorded before
    /// is still there (files are removed by count, never by the date of one bucket).
    #[test]
    fn a_bucket_dated_far_ahead_removes_nothing_recorded_before() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("history");
        let (writer, _) = HistoryWriter::open(&path, policy(), Storage::new()).unwrap();
        let t0 = 1_000_000 * STEP;
        for i in 0..5 {
            writer.record(t0 + i * STEP, check(i as u32, 1));
        }
        writer.record(t0 + 30 * 86_400_000, check(99, 1));
        writer.record(t0 + 6 * STEP, check(6, 1));
        writer.flush().unwrap();
        let read = read_history(&path, 0, &policy()).unwrap();
        let fine_before: Vec<u64> = read
            .records
            .iter()
            .filter(|r| r.source == Source::Host && r.step_ms == STEP as u32 && r.start_ms < t0 + 5 * STEP)
            .map(|r| r.start_ms)
            .collect();
        assert_eq!(fine_before, (0..5).map(|i| t0 + i * STEP).collect::<Vec<_>>());
    }

    #[test]
    fn intact_prefix() {
        let mut bytes = Vec::new();
        for i in 0..3 {
            let mut r = Record::new(Source::Host, 10, i * 10);
            r.set(0, Some(1));
            r.encode(&mut bytes);
        }
        assert_eq!(intact_prefix_len(&bytes), bytes.len());
        for cut in 1..RECORD_BYTES {
            assert_eq!(intact_prefix_len(&bytes[..bytes.len() - cut]), 2 * RECORD_BYTES, "cut {cut}");
        }
        assert_eq!(intact_prefix_len(&[]), 0);
    }
}
