//! Reading the history back, without the directory's lock and while it is written: a
//! partial record at the end of a file (an append in flight) is not yet there, a damaged
//! one is skipped and counted, never an error.

use std::collections::BTreeMap;
use std::path::Path;

use super::policy::{HistoryPolicy, Tier, MAX_FILE_BYTES};
use super::record::{Record, Source, RECORD_BYTES};
use super::writer::SUFFIX;
use crate::durable::fs::{classify, open_state_dir_read_only, Result, StateDir, Storage, ERR_NOT_FOUND};

/// What was read: records of both tiers, oldest first per source; where the fine tier
/// has data, only its records (the coarse tier covers what is older).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HistoryReadout {
    pub records: Vec<Record>,
    /// Records that failed their check (damage, or an append being overwritten).
    pub skipped: u64,
    /// Files that could not be read, or were beyond what the writer keeps, and why.
    pub unreadable: Vec<String>,
}

impl HistoryReadout {
    /// The sources that have records, in order.
    pub fn sources(&self) -> Vec<Source> {
        let mut sources: Vec<Source> = self.records.iter().map(|r| r.source).collect();
        sources.sort_unstable();
        sources.dedup();
        sources
    }
}

/// Reads the records of the history in `path` whose bucket ends after `since_ms`,
/// without taking the directory's lock. The tiers are found by their file names
/// (`policy` names them); each record carries its own step.
pub fn read_history(path: &Path, since_ms: u64, policy: &HistoryPolicy) -> Result<HistoryReadout> {
    let dir = open_state_dir_read_only(path)?;
    let storage = Storage::new();
    let mut readout = HistoryReadout::default();
    let fine = read_tier(&storage, &dir, &policy.fine, since_ms, &mut readout)?;
    // The fine tier's oldest bucket: the coarse tier only fills in before it.
    let fine_from = fine.keys().map(|&(_, start, _)| start).min().unwrap_or(u64::MAX);
    let coarse = read_tier(&storage, &dir, &policy.coarse, since_ms, &mut readout)?;
    let mut merged: BTreeMap<Key, Record> = coarse.into_iter().filter(|(_, r)| r.end_ms() <= fine_from).collect();
    merged.extend(fine);
    readout.records = merged.into_values().collect();
    Ok(readout)
}

/// A record's place: its source, bucket start and step (runs with other steps may have
/// written buckets that start at the same time; they are not one bucket).
type Key = (Source, u64, u32);

/// The records of one tier by [`Key`]; a bucket written twice (a restart within it) is
/// folded into one. At most the files the writer keeps are read, newest first.
fn read_tier(
    storage: &Storage,
    dir: &StateDir,
    tier: &Tier,
    since_ms: u64,
    readout: &mut HistoryReadout,
) -> Result<BTreeMap<Key, Record>> {
    let mut numbers: Vec<(u64, String)> =
        dir.list()?.into_iter().filter_map(|e| classify(&e, tier.prefix, SUFFIX).ours().map(|n| (n, e.name))).collect();
    numbers.sort_unstable();
    // More than the writer keeps were not all written by it: the newest are read, so that
    // what a reader holds stays bounded.
    let keep = tier.max_files() as usize;
    if numbers.len() > keep {
        let beyond = numbers.len() - keep;
        readout
            .unreadable
            .push(format!("{beyond} {}* files beyond the {keep} the writer keeps: not read", tier.prefix));
        numbers.drain(..beyond);
    }
    let mut records: BTreeMap<Key, Record> = BTreeMap::new();
    // Every file is read: after the clock went back, a file holds buckets older than its
    // name says, so names cannot tell which files lie wholly before `since_ms` (the
    // files are bounded: reading a whole day of 8 GPUs takes tens of ms).
    for (_, name) in &numbers {
        let bytes = match storage.read_bounded(dir, name, MAX_FILE_BYTES) {
            Ok(bytes) => bytes,
            // Removed by the writer's retention since the listing: nothing to read.
            Err(e) if e.code == ERR_NOT_FOUND => continue,
            Err(e) => {
                readout.unreadable.push(format!("{name}: {}", e.message));
                continue;
            }
        };
        // A partial record at the end is an append in flight (or torn): not there yet.
        for chunk in bytes.chunks_exact(RECORD_BYTES) {
            let Some(record) = Record::decode(chunk) else {
                readout.skipped += 1;
                continue;
            };
            if record.end_ms() <= since_ms {
                continue;
            }
            match records.get_mut(&(record.source, record.start_ms, record.step_ms)) {
                Some(earlier) => earlier.fold(&record),
                None => {
                    records.insert((record.source, record.start_ms, record.step_ms), record);
                }
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::record::{HostSignal, MAX_START_MS};
    use std::fs;

    fn file(dir: &Path, prefix: &str, number: u64, records: &[Record]) {
        let mut bytes = Vec::new();
        records.iter().for_each(|r| r.encode(&mut bytes));
        fs::write(dir.join(format!("{prefix}{number:020}{SUFFIX}")), bytes).unwrap();
    }

    fn host(step_ms: u32, start_ms: u64, used: u32) -> Record {
        let mut r = Record::new(Source::Host, step_ms, start_ms);
        r.set(HostSignal::MemoryUsedMib as usize, Some(used));
        r
    }

    fn history_dir() -> (tempfile::TempDir, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("history");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        (root, path)
    }

    #[test]
    fn buckets_of_runs_with_other_steps_stay_apart() {
        let (_root, path) = history_dir();
        let policy = HistoryPolicy::with_step(1000);
        // A run at 1 s stopped inside the bucket at 60 s; the next, at 60 s steps, wrote its own.
        file(&path, policy.fine.prefix, 60_000, &[host(1000, 60_000, 5), host(60_000, 60_000, 9)]);
        let read = read_history(&path, 0, &policy).unwrap();
        let steps: Vec<(u64, u32, u16)> = read.records.iter().map(|r| (r.start_ms, r.step_ms, r.samples)).collect();
        assert_eq!(steps, [(60_000, 1000, 1), (60_000, 60_000, 1)], "not folded into one");
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named_and_the_rest_is_read() {
        let (_root, path) = history_dir();
        let policy = HistoryPolicy::with_step(1000);
        file(&path, policy.fine.prefix, 1000, &[host(1000, 1000, 5)]);
        let huge = fs::File::create(path.join(format!("{}{:020}{SUFFIX}", policy.fine.prefix, 2000))).unwrap();
        huge.set_len(MAX_FILE_BYTES + 1).unwrap();
        let read = read_history(&path, 0, &policy).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.unreadable.len(), 1, "{:?}", read.unreadable);
        assert!(read.unreadable[0].starts_with("history-fine-00000000000000002000.rec: "), "{:?}", read.unreadable);
    }

    #[test]
    fn no_more_files_are_read_than_the_writer_keeps() {
        let (_root, path) = history_dir();
        let policy = HistoryPolicy::with_step(1000);
        let keep = policy.coarse.max_files();
        for n in 1..=keep + 3 {
            file(&path, policy.coarse.prefix, n * 30_000, &[host(30_000, n * 30_000, n as u32)]);
        }
        let read = read_history(&path, 0, &policy).unwrap();
        assert_eq!(read.records.len() as u64, keep, "the newest {keep}");
        assert_eq!(read.records[0].start_ms, 4 * 30_000);
        assert_eq!(read.unreadable, [format!("3 history-coarse-* files beyond the {keep} the writer keeps: not read")]);
    }

    #[test]
    fn a_record_whose_start_would_overflow_is_damage_not_a_panic() {
        let (_root, path) = history_dir();
        let policy = HistoryPolicy::with_step(1000);
        let far = (MAX_START_MS / 1000 + 1) * 1000;
        file(&path, policy.fine.prefix, 1000, &[host(1000, 1000, 1), host(1000, far, 2), host(1000, 2500, 3)]);
        let read = read_history(&path, u64::MAX - 10, &policy).unwrap();
        assert!(read.records.is_empty());
        let read = read_history(&path, 0, &policy).unwrap();
        assert_eq!((read.records.len(), read.skipped), (1, 2), "past 9999, and a start between steps");
    }
}
