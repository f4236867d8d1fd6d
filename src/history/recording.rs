//! The history a supervisor records into: open (and its directory locked) while the
//! supervisor runs, closed when it stops, so another process (or a new supervisor) may
//! record there then; reopened by the next start.

use std::path::{Path, PathBuf};

use super::policy::HistoryPolicy;
use super::record::Record;
use super::writer::HistoryWriter;
use crate::durable::{DurableError, RecoveryProblem, Result, Storage};
use crate::sync::lock;

pub struct Recording {
    path: PathBuf,
    policy: HistoryPolicy,
    storage: Storage,
    writer: std::sync::Mutex<Option<HistoryWriter>>,
    /// Held while a detached writer is finished: an open waits for its lock to go.
    finishing: std::sync::Mutex<()>,
    /// What opening repaired (a torn tail cut, a foreign file set aside), until reported.
    problems: std::sync::Mutex<Vec<RecoveryProblem>>,
}

impl Recording {
    /// Opens the history in `path` now, so a directory that cannot be recorded into is an
    /// error when the supervisor is made, not when it starts.
    pub fn open(path: &Path, policy: HistoryPolicy) -> Result<Self> {
        Self::open_with(path, policy, Storage::new())
    }

    /// [`open`](Self::open) through `storage` (tests give one that fails or stalls).
    pub fn open_with(path: &Path, policy: HistoryPolicy, storage: Storage) -> Result<Self> {
        let recording = Recording {
            path: path.to_owned(),
            policy,
            storage,
            writer: std::sync::Mutex::new(None),
            finishing: std::sync::Mutex::new(()),
            problems: std::sync::Mutex::new(Vec::new()),
        };
        recording.ensure_open()?;
        Ok(recording)
    }

    /// Opens the history again if a stop closed it (`ERR_HISTORY_LOCKED` if another writer
    /// took it meanwhile). Waits for a writer being finished to let go of the directory.
    pub fn ensure_open(&self) -> Result<()> {
        let _finished = lock(&self.finishing);
        let mut writer = lock(&self.writer);
        if writer.is_none() {
            let (opened, problems) = HistoryWriter::open(&self.path, self.policy, self.storage.clone())?;
            lock(&self.problems).extend(problems);
            *writer = Some(opened);
        }
        Ok(())
    }

    /// Folds one check in (nothing when closed); the last write failure, if any, to report.
    pub fn record(&self, at_ms: u64, records: Vec<Record>) -> Option<DurableError> {
        let writer = lock(&self.writer);
        let writer = writer.as_ref()?;
        writer.record(at_ms, records);
        writer.take_failure()
    }

    /// Takes the writer out: nothing more is recorded until [`ensure_open`](Self::ensure_open).
    /// Cheap; [`finish`](Self::finish) it off the async threads.
    pub fn detach(&self) -> Option<HistoryWriter> {
        lock(&self.writer).take()
    }

    /// Writes the open buckets of a detached writer, waits until they are durable and
    /// releases the directory. Blocks (for one fdatasync): call it off the async threads.
    pub fn finish(&self, writer: HistoryWriter) -> Result<()> {
        let _finishing = lock(&self.finishing);
        let flushed = writer.flush();
        // Joins the writer thread; the directory's lock goes with the handle.
        drop(writer);
        flushed
    }

    /// What opening repaired since the last call.
    pub fn take_problems(&self) -> Vec<RecoveryProblem> {
        std::mem::take(&mut *lock(&self.problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::ERR_HISTORY_LOCKED;
    use crate::history::{read_history, Source};

    /// What the supervisor's stop does: detach the writer, then finish it.
    fn close(recording: &Recording) -> Result<()> {
        recording.detach().map_or(Ok(()), |writer| recording.finish(writer))
    }

    #[test]
    fn close_makes_what_was_recorded_durable_and_releases_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("history");
        let policy = HistoryPolicy::with_step(1000);
        let recording = Recording::open(&dir, policy).unwrap();
        let locked = Recording::open(&dir, policy).err().map(|e| e.code);
        assert_eq!(locked, Some(ERR_HISTORY_LOCKED), "one writer at a time");
        assert!(recording.record(5_500, vec![Record::new(Source::Host, 1, 0)]).is_none());
        close(&recording).unwrap();
        let read = read_history(&dir, 0, &policy).unwrap();
        assert_eq!(read.records.iter().filter(|r| r.start_ms == 5_000).count(), 1, "the open bucket was written");
        // Released: another writer may open it, and the first one reopens once that one closes.
        let other = Recording::open(&dir, policy).unwrap();
        assert_eq!(recording.ensure_open().err().map(|e| e.code), Some(ERR_HISTORY_LOCKED));
        close(&other).unwrap();
        recording.ensure_open().unwrap();
        assert!(recording.record(6_500, vec![Record::new(Source::Host, 1, 0)]).is_none());
        close(&recording).unwrap();
        close(&recording).unwrap();
    }

    #[test]
    fn a_torn_tail_cut_on_open_is_reported_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("history");
        let policy = HistoryPolicy::with_step(1000);
        let recording = Recording::open(&dir, policy).unwrap();
        recording.record(5_500, vec![Record::new(Source::Host, 1, 0)]);
        close(&recording).unwrap();
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("history-fine-"))
            .unwrap();
        // Half a record: what a crash in the middle of an append leaves.
        let mut appended = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
        std::io::Write::write_all(&mut appended, &[7u8; 40]).unwrap();
        let reopened = Recording::open(&dir, policy).unwrap();
        let problems = reopened.take_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, crate::durable::ProblemKind::TornTail);
        assert!(reopened.take_problems().is_empty(), "reported once");
    }
}
