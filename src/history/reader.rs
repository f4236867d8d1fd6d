//! Reading the history back, without the directory's lock and while it is written: a
//! partial record at the end of a file (an append in flight) is not yet there, a damaged
//! one is skipped and counted, never an error.

use std::collections::BTreeMap;
use std::path::Path;

use super::policy::{HistoryPolicy, Tier, MAX_FILE_BYTES};
use super::record::{Record, Source, RECORD_BYTES};
use super::writer::SUFFIX;
use crate::durable::fs::{classify, open_state_dir_read_only, Result, StateDir, Storage};

/// What was read: records of both tiers, oldest first per source; where the fine tier
/// has data, only its records (the coarse tier covers what is older).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HistoryReadout {
    pub records: Vec<Record>,
    /// Records that failed their check (damage, or an append being overwritten).
    pub skipped: u64,
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
    let fine = read_tier(&storage, &dir, &policy.fine, since_ms, &mut readout.skipped)?;
    // The fine tier's oldest bucket: the coarse tier only fills in before it.
    let fine_from = fine.keys().map(|&(_, start)| start).min().unwrap_or(u64::MAX);
    let coarse = read_tier(&storage, &dir, &policy.coarse, since_ms, &mut readout.skipped)?;
    let mut merged: BTreeMap<(Source, u64), Record> =
        coarse.into_iter().filter(|(_, r)| r.start_ms + u64::from(r.step_ms) <= fine_from).collect();
    merged.extend(fine);
    readout.records = merged.into_values().collect();
    Ok(readout)
}

/// The records of one tier by (source, bucket start); a bucket written twice (a restart
/// within it) is folded into one.
fn read_tier(
    storage: &Storage,
    dir: &StateDir,
    tier: &Tier,
    since_ms: u64,
    skipped: &mut u64,
) -> Result<BTreeMap<(Source, u64), Record>> {
    let mut numbers: Vec<(u64, String)> =
        dir.list()?.into_iter().filter_map(|e| classify(&e, tier.prefix, SUFFIX).ours().map(|n| (n, e.name))).collect();
    numbers.sort_unstable();
    let mut records: BTreeMap<(Source, u64), Record> = BTreeMap::new();
    // Every file is read: after the clock went back, a file holds buckets older than its
    // name says, so names cannot tell which files lie wholly before `since_ms` (the
    // files are bounded: reading a whole day of 8 GPUs takes tens of ms).
    for (_, name) in &numbers {
        // Removed by the writer's retention since the listing: nothing to read.
        let Ok(bytes) = storage.read_bounded(dir, name, MAX_FILE_BYTES) else { continue };
        // A partial record at the end is an append in flight (or torn): not there yet.
        for chunk in bytes.chunks_exact(RECORD_BYTES) {
            let Some(record) = Record::decode(chunk) else {
                *skipped += 1;
                continue;
            };
            if record.start_ms + u64::from(record.step_ms) <= since_ms {
                continue;
            }
            match records.get_mut(&(record.source, record.start_ms)) {
                Some(earlier) => earlier.fold(&record),
                None => {
                    records.insert((record.source, record.start_ms), record);
                }
            }
        }
    }
    Ok(records)
}
