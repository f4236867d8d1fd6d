//! Durable whole-file writes (temp file, fsync, rename, directory fsync; rewritten once
//! into a new temp file on failure) and the removal of leftovers and old generations.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{DurableError, Result};
use super::state_dir::StateDir;
use super::storage::Storage;

/// Temp-file names start with this; each store removes its own leftovers on open.
pub const TEMP_PREFIX: &str = ".tmp-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` as `name` in `dir` durably, rewriting it once into a new temp file if
/// any step fails. Returns only once the file and its directory entry are on disk; after
/// a second failure, `ERR_PERSIST_FAILED` (degraded) and nothing is left behind.
/// `name` must be new (derived from a sequence number): a failure removes it.
pub(crate) fn write_file_durable(storage: &Storage, dir: &StateDir, name: &str, bytes: &[u8]) -> Result<()> {
    let first = match write_file_attempt(storage, dir, name, bytes) {
        Ok(()) => {
            storage.persisted(name);
            return Ok(());
        }
        Err(e) => e,
    };
    write_file_attempt(storage, dir, name, bytes)
        .map_err(|second| {
            storage
                .persist_failed(name, format!("writing {name} failed, and again on rewrite: {first}; then: {second}"))
        })
        .map(|()| storage.persisted(name))
}

/// One attempt only: for recovering from a failed append, where the append was the first
/// try and this new file is the rewrite. Failure is `ERR_PERSIST_FAILED` (degraded).
pub(crate) fn write_file_rewrite(
    storage: &Storage,
    dir: &StateDir,
    name: &str,
    bytes: &[u8],
    first_failure: &io::Error,
) -> Result<()> {
    write_file_attempt(storage, dir, name, bytes)
        .map_err(|second| {
            storage.persist_failed(
                name,
                format!("append failed ({first_failure}), and writing its content to a new file {name} failed too: {second}"),
            )
        })
        .map(|()| storage.persisted(name))
}

/// Temp file, write, fsync, rename, fsync directory. On failure removes the temp file
/// (and the target, if the rename happened) so nothing half-done stays.
fn write_file_attempt(storage: &Storage, dir: &StateDir, name: &str, bytes: &[u8]) -> io::Result<()> {
    let (temp, file) = create_temp(storage, dir, name)?;
    if let Err(e) = write_sync_rename(storage, dir, file, &temp, name, bytes) {
        let _ = storage.remove_file(&dir.handle, &temp);
        return Err(e);
    }
    if let Err(e) = dir.sync(storage) {
        // Renamed but not known durable: take it back rather than leave a file whose
        // write was reported as failed.
        let _ = storage.remove_file(&dir.handle, name);
        return Err(e);
    }
    Ok(())
}

fn write_sync_rename(
    storage: &Storage,
    dir: &StateDir,
    mut file: File,
    temp: &str,
    target: &str,
    bytes: &[u8],
) -> io::Result<()> {
    storage.write_all(&mut file, bytes)?;
    storage.sync_all(&file)?;
    drop(file);
    storage.rename(&dir.handle, temp, target)
}

fn create_temp(storage: &Storage, dir: &StateDir, name: &str) -> io::Result<(String, File)> {
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = format!("{TEMP_PREFIX}{name}-{}-{n}", std::process::id());
        match storage.create_new(&dir.handle, &temp) {
            Ok(file) => return Ok((temp, file)),
            // A leftover of an earlier process with the same pid: take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes leftover temp files of `family` (a final-name prefix such as `checkpoint-`):
/// the remains of writes interrupted by a crash. Only regular files: a symlink, FIFO or
/// directory under such a name was not written here and is left alone rather than
/// failing the open.
pub(crate) fn remove_temp_files(storage: &Storage, dir: &StateDir, family: &str) -> Result<()> {
    let prefix = format!("{TEMP_PREFIX}{family}");
    for entry in dir.list()? {
        if entry.is_file && entry.name.starts_with(&prefix) {
            match storage.remove_file(&dir.handle, &entry.name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(DurableError::io(format!("removing leftover {}", entry.name), &e)),
            }
        }
    }
    Ok(())
}

/// Removes files (older generations); missing ones are fine. Then fsyncs the directory.
/// Best effort: keeping an old file is always safe, so failures are not errors.
pub(crate) fn remove_files(storage: &Storage, dir: &StateDir, names: &[String]) {
    if names.is_empty() {
        return;
    }
    for name in names {
        let _ = storage.remove_file(&dir.handle, name);
    }
    let _ = dir.sync(storage);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::fs::test_support::{
        names_in, op_counts, state_dir, swap_for_symlink, temp_names, AddFault, FAULT_STEPS,
    };
    use crate::durable::fs::{set_aside, AppendFile, FaultPlan, IoOp, ERR_PERSIST_FAILED, LOCK_FILE_NAME};
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn durable_write_round_trip_leaves_no_temp() {
        let root = tempfile::tempdir().unwrap();
        let dir = state_dir(&root);
        let storage = Storage::new();
        write_file_durable(&storage, &dir, "f-1", b"hello").unwrap();
        assert_eq!(fs::read(dir.file("f-1")).unwrap(), b"hello");
        assert_eq!(fs::metadata(dir.file("f-1")).unwrap().mode() & 0o777, 0o600);
        assert!(temp_names(dir.path()).is_empty());
        let counts = op_counts(&storage);
        assert_eq!(
            (counts[&IoOp::Create], counts[&IoOp::Sync], counts[&IoOp::Rename], counts[&IoOp::SyncDir]),
            (1, 1, 1, 1)
        );
    }

    /// Each step failing once is absorbed by the rewrite into a new temp file; failing
    /// twice is ERR_PERSIST_FAILED, degraded, and leaves neither temp nor target.
    #[test]
    fn every_step_rewrites_once_then_fails() {
        let create: (&str, AddFault) = ("create", |plan, n| plan.fail(IoOp::Create, n));
        for (step, fail_nth) in FAULT_STEPS.into_iter().chain([create]) {
            let root = tempfile::tempdir().unwrap();
            let dir = state_dir(&root);

            let storage = Storage::with_faults(fail_nth(FaultPlan::new(), 1));
            write_file_durable(&storage, &dir, "once", b"content").unwrap_or_else(|e| panic!("{step}: {e}"));
            assert_eq!(fs::read(dir.file("once")).unwrap(), b"content", "{step}");
            assert_eq!(storage.op_count(IoOp::Create), 2, "{step}: the rewrite uses a new temp file");
            assert!(!storage.is_degraded(), "{step}");

            let storage = Storage::with_faults(fail_nth(fail_nth(FaultPlan::new(), 1), 2));
            let err = write_file_durable(&storage, &dir, "twice", b"content").unwrap_err();
            assert_eq!(err.code, ERR_PERSIST_FAILED, "{step}");
            assert!(storage.is_degraded(), "{step}");
            assert!(storage.degraded_reason().unwrap().contains("injected"), "{step}");
            assert!(!dir.file("twice").exists(), "{step}: a failed write leaves no target");
            assert!(temp_names(dir.path()).is_empty(), "{step}: no temp files left");
        }
    }

    /// Degraded lasts until a write of the same family of files succeeds again: a full disk
    /// that was freed clears it, a small write of another family does not.
    #[test]
    fn degraded_clears_when_the_same_family_persists_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = state_dir(&root);
        let storage = Storage::with_faults(FaultPlan::new().no_space_on_write(1).no_space_on_write(2));
        let err = write_file_durable(&storage, &dir, "checkpoint-1", b"big").unwrap_err();
        assert_eq!(err.code, ERR_PERSIST_FAILED);
        assert!(storage.is_degraded());
        storage.clear_fault_plan();
        write_file_durable(&storage, &dir, "journal-1", b"small").unwrap();
        let mut journal = AppendFile::open(&storage, &dir, "journal-1").unwrap();
        journal.append(&storage, b" more").unwrap();
        assert!(storage.is_degraded(), "journal writes do not vouch for checkpoints");
        write_file_durable(&storage, &dir, "checkpoint-2", b"big").unwrap();
        assert!(!storage.is_degraded());
        assert_eq!(storage.degraded_reason(), None);
    }

    #[test]
    fn rewrite_after_append_failure_is_single_attempt() {
        let root = tempfile::tempdir().unwrap();
        let dir = state_dir(&root);
        let storage = Storage::with_faults(FaultPlan::new().fail(IoOp::Sync, 1));
        let first = io::Error::other("first");
        let err = write_file_rewrite(&storage, &dir, "seg", b"x", &first).unwrap_err();
        assert_eq!(err.code, ERR_PERSIST_FAILED);
        assert!(storage.is_degraded());
        assert_eq!(storage.op_count(IoOp::Create), 1);
    }

    /// Whole-file writes, setting aside and removal all go to the directory that was checked
    /// and locked at open, even once its path names another directory.
    #[test]
    fn files_are_reached_through_the_handle_not_the_path() {
        let root = tempfile::tempdir().unwrap();
        let dir = state_dir(&root);
        let storage = Storage::new();
        write_file_durable(&storage, &dir, "f-1", b"one").unwrap();
        let (moved, elsewhere) = swap_for_symlink(dir.path());
        fs::write(elsewhere.join("f-1"), b"theirs").unwrap();

        write_file_durable(&storage, &dir, "f-2", b"two").unwrap();
        let aside = set_aside(&storage, &dir, "f-2", "f-").unwrap();
        remove_files(&storage, &dir, &["f-1".to_string()]);
        let mut appended = AppendFile::open(&storage, &dir, &aside).unwrap();
        appended.append(&storage, b"+").unwrap();

        assert_eq!(names_in(&elsewhere), ["f-1"], "nothing created, renamed or removed there");
        assert_eq!(fs::read(elsewhere.join("f-1")).unwrap(), b"theirs");
        assert_eq!(names_in(&moved), [LOCK_FILE_NAME.to_string(), aside.clone()]);
        assert_eq!(fs::read(moved.join(&aside)).unwrap(), b"two+");
        assert_eq!(storage.read_bounded(&dir, &aside, 10).unwrap(), b"two+");
    }
}
