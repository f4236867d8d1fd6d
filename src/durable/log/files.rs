//! The numbered files of one log (`{prefix}{n:020}{suffix}` in its state directory) and
//! the rules every log follows for them: a new file is written whole (so none exists
//! half-written), appends are written whole and fdatasynced, and a failed append is never
//! followed by another on the same file: its content goes into a new file, once.

use std::io;
use std::sync::Arc;

use crate::durable::defaults::MAX_SEQUENCE;
use crate::durable::dir::DirEntry;
use crate::durable::fs::{
    classify, remove_files, remove_temp_files, set_aside_foreign, write_file_durable, write_file_rewrite, AppendFile,
    DurableError, ForeignFile, RecoveryProblem, Result, StateDir, Storage, ERR_INVALID_ARGUMENT,
};

/// Whether a new file gets the rewrite-once retry of its own or is itself the retry of a
/// failed append.
pub(crate) enum NewFile<'a> {
    WithRetry,
    RetryOf(&'a io::Error),
}

/// How an append went.
pub(crate) enum Appended {
    /// Onto the current file.
    InPlace,
    /// The append failed; the current file is given up and the caller writes the content
    /// into a new file with `NewFile::RetryOf` the error.
    Failed(io::Error),
}

/// One log's files in its directory.
#[derive(Debug)]
pub(crate) struct LogFiles {
    pub(crate) storage: Storage,
    pub(crate) dir: Arc<StateDir>,
    /// e.g. `journal-`; also the family name for setting files aside.
    pub(crate) prefix: &'static str,
    pub(crate) suffix: &'static str,
    /// What the files are called in messages (`journal file`, `incident segment`).
    what: &'static str,
    /// Whether a failed append is cut back off its file: needed where older files stay
    /// and are read (incident segments); not where they are removed once the new file is
    /// durable (journal files).
    cut_failed_appends: bool,
}

impl LogFiles {
    /// The files of a log in `dir`, after removing the temp files an interrupted write
    /// left and setting aside what sits under the log's names without being a file it
    /// wrote (reported as problems).
    pub(crate) fn open(
        storage: Storage,
        dir: Arc<StateDir>,
        prefix: &'static str,
        suffix: &'static str,
        what: &'static str,
        cut_failed_appends: bool,
    ) -> Result<(Self, Vec<RecoveryProblem>)> {
        remove_temp_files(&storage, &dir, prefix)?;
        let foreign = set_aside_foreign(&storage, &dir, prefix, suffix)?;
        let files = LogFiles { storage, dir, prefix, suffix, what, cut_failed_appends };
        Ok((files, foreign.into_iter().map(ForeignFile::into_problem).collect()))
    }

    pub(crate) fn name(&self, number: u64) -> String {
        format!("{}{number:020}{}", self.prefix, self.suffix)
    }

    /// The number of a file of this log (a regular file under a name it writes).
    pub(crate) fn number(&self, entry: &DirEntry) -> Option<u64> {
        classify(entry, self.prefix, self.suffix).ours()
    }

    /// The numbers of this log's files now in the directory, ascending.
    pub(crate) fn numbers(&self) -> Result<Vec<u64>> {
        let mut numbers: Vec<u64> = self.dir.list()?.iter().filter_map(|e| self.number(e)).collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Writes file `number` holding `bytes` durably (whole-file protocol). Refuses a
    /// number past [`MAX_SEQUENCE`]: such a file would be set aside as not ours on the
    /// next open.
    pub(crate) fn write_new(&self, number: u64, bytes: &[u8], mode: NewFile<'_>) -> Result<()> {
        if number > MAX_SEQUENCE {
            return Err(DurableError::new(
                ERR_INVALID_ARGUMENT,
                format!("{} numbers are exhausted at {MAX_SEQUENCE}", self.what),
            ));
        }
        let name = self.name(number);
        match mode {
            NewFile::WithRetry => write_file_durable(&self.storage, &self.dir, &name, bytes)?,
            NewFile::RetryOf(first) => write_file_rewrite(&self.storage, &self.dir, &name, bytes, first)?,
        }
        Ok(())
    }

    /// Opens existing file `number` for appending.
    pub(crate) fn open_file(&self, number: u64) -> Result<AppendFile> {
        AppendFile::open(&self.storage, &self.dir, &self.name(number))
    }

    /// Appends `bytes` to `current` with one write and one fdatasync. On failure `current`
    /// is given up (`None`) and nothing is appended to it again; where the log says so, what
    /// reached it past its durable length is cut away first (best effort).
    pub(crate) fn append(&self, current: &mut Option<AppendFile>, bytes: &[u8]) -> Appended {
        let Some(file) = current.as_mut() else {
            return Appended::Failed(io::Error::other(format!("no {} open for appending", self.what)));
        };
        match file.append(&self.storage, bytes) {
            Ok(()) => Appended::InPlace,
            Err(e) => {
                if self.cut_failed_appends {
                    let durable_len = file.len();
                    let _ = file.truncate_to(&self.storage, durable_len);
                }
                *current = None;
                Appended::Failed(e)
            }
        }
    }

    /// Removes files of this log by number (best effort: keeping an old file is safe).
    pub(crate) fn remove(&self, numbers: impl IntoIterator<Item = u64>) {
        let names: Vec<String> = numbers.into_iter().map(|n| self.name(n)).collect();
        remove_files(&self.storage, &self.dir, &names);
    }

    /// Removes every file of this log numbered below `number`.
    pub(crate) fn remove_before(&self, number: u64) {
        let Ok(numbers) = self.numbers() else { return };
        self.remove(numbers.into_iter().filter(|&n| n < number));
    }
}
