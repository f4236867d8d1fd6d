//! State directories: opened and checked once, locked, and from then on reached only
//! through the handle opened then (never by path again).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::{DurableError, Result, ERR_UNSAFE_DIRECTORY};
use super::storage::Storage;
use crate::durable::dir::{DirEntry, DirHandle};

/// The name of the lock file inside every state directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// An open, checked, locked state directory. The lock is held until this is dropped
/// (and released by the kernel if the process dies). Every file in it is reached through
/// the handle opened and checked here, never by path again: a directory swapped for a
/// symlink after open changes nothing, the writes still land in the directory that was
/// checked and locked.
#[derive(Debug)]
pub struct StateDir {
    /// For messages only.
    path: PathBuf,
    pub(super) handle: DirHandle,
    /// Holds the `flock` on `LOCK`; `None` for a read-only open, which takes no lock.
    _lock: Option<File>,
}

impl StateDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` as it was at open, for tests that look at the files.
    #[cfg(test)]
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub(crate) fn sync(&self, storage: &Storage) -> io::Result<()> {
        storage.sync_dir(&self.handle)
    }

    /// The entries of the directory (non-UTF-8 names are not ours; left out).
    pub(crate) fn list(&self) -> Result<Vec<DirEntry>> {
        self.handle.list().map_err(|e| DurableError::io(format!("listing {}", self.path.display()), &e))
    }

    /// The size of `name` if it is a regular file (`None` if it is anything else or gone).
    pub(crate) fn file_len(&self, name: &str) -> Option<u64> {
        self.handle.file_len(name).ok().flatten()
    }
}

/// Opens (creating it, mode 0700, if missing) a directory for durable state and locks it.
/// Refuses a symlink, a directory owned by another user or one with any group/other
/// permission bits (`ERR_UNSAFE_DIRECTORY`): state there could be read or swapped by
/// someone else. A second holder of the lock, in this process or another, gets
/// `locked_code` (`ERR_CHECKPOINT_LOCKED` or `ERR_INCIDENT_LOG_LOCKED`).
pub fn open_state_dir(path: &Path, locked_code: &'static str) -> Result<StateDir> {
    let created = match fs::symlink_metadata(path) {
        Ok(meta) => {
            check_dir_safety(path, &meta)?;
            false
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| DurableError::io(format!("creating {}", path.display()), &e))?;
            true
        }
        Err(e) => return Err(DurableError::io(format!("stat {}", path.display()), &e)),
    };
    // Checked again through the handle we keep: it cannot be swapped under us.
    let handle = DirHandle::open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => unsafe_dir(path, "is a symbolic link or not a directory"),
        _ => DurableError::io(format!("opening {}", path.display()), &e),
    })?;
    if created {
        // The umask may have taken bits away, never added; set exactly 0700.
        handle.set_mode(0o700).map_err(|e| DurableError::io(format!("chmod {}", path.display()), &e))?;
    }
    let meta = handle.metadata().map_err(|e| DurableError::io(format!("stat {}", path.display()), &e))?;
    check_dir_safety(path, &meta)?;
    let lock_file = lock_state_dir(path, &handle, locked_code)?;
    Ok(StateDir { path: path.to_path_buf(), handle, _lock: Some(lock_file) })
}

/// Opens an existing state directory to read it while its writer may hold the lock: the
/// same safety checks as [`open_state_dir`], but nothing is created and no lock is taken,
/// so readers never block the writer or each other. The caller must only read through it
/// and tolerate files that change underneath (a torn last record of an append in flight).
/// `ERR_NOT_FOUND` when the directory does not exist.
pub fn open_state_dir_read_only(path: &Path) -> Result<StateDir> {
    match fs::symlink_metadata(path) {
        Ok(meta) => check_dir_safety(path, &meta)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DurableError::new(super::error::ERR_NOT_FOUND, format!("{} does not exist", path.display())))
        }
        Err(e) => return Err(DurableError::io(format!("stat {}", path.display()), &e)),
    }
    let handle = DirHandle::open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => unsafe_dir(path, "is a symbolic link or not a directory"),
        _ => DurableError::io(format!("opening {}", path.display()), &e),
    })?;
    let meta = handle.metadata().map_err(|e| DurableError::io(format!("stat {}", path.display()), &e))?;
    check_dir_safety(path, &meta)?;
    Ok(StateDir { path: path.to_path_buf(), handle, _lock: None })
}

/// Opens (creating) `LOCK` in the directory and takes its `flock`.
fn lock_state_dir(path: &Path, handle: &DirHandle, locked_code: &'static str) -> Result<File> {
    let lock_file = handle
        .open_file(LOCK_FILE_NAME, libc::O_RDWR | libc::O_CREAT, 0o600)
        .map_err(|e| lock_open_error(path, handle, &e))?;
    // flock: per open file description, so a second open in this process conflicts too.
    match lock_file.try_lock() {
        Ok(()) => Ok(lock_file),
        Err(fs::TryLockError::WouldBlock) => Err(DurableError::new(
            locked_code,
            format!("{} is locked: another open (in this or another process) is using it", path.display()),
        )),
        Err(fs::TryLockError::Error(e)) => {
            Err(DurableError::io(format!("locking {}", path.join(LOCK_FILE_NAME).display()), &e))
        }
    }
}

fn lock_open_error(path: &Path, handle: &DirHandle, err: &io::Error) -> DurableError {
    match handle.file_len(LOCK_FILE_NAME) {
        Ok(None) => unsafe_dir(path, &format!("holds a {LOCK_FILE_NAME} that is not a regular file")),
        _ => DurableError::io(format!("opening {}", path.join(LOCK_FILE_NAME).display()), err),
    }
}

fn check_dir_safety(path: &Path, meta: &fs::Metadata) -> Result<()> {
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir(path, "is a symbolic link"));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir(path, "is not a directory"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(unsafe_dir(path, &format!("is owned by uid {}, not by this process (euid {euid})", meta.uid())));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(path, &format!("has mode {mode:o}; group/other must have no access (chmod 700)")));
    }
    Ok(())
}

fn unsafe_dir(path: &Path, why: &str) -> DurableError {
    DurableError::new(ERR_UNSAFE_DIRECTORY, format!("refusing state directory {}: it {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::fs::test_support::mkfifo;
    use crate::durable::fs::{ERR_CHECKPOINT_LOCKED, ERR_INCIDENT_LOG_LOCKED};
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn creates_directory_0700_with_parents() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b/state");
        let dir = open_state_dir(&path, ERR_CHECKPOINT_LOCKED).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o700);
        assert_eq!(dir.path(), path);
        assert!(path.join(LOCK_FILE_NAME).exists());
    }

    #[test]
    fn refuses_symlink_and_open_permissions() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        let link = root.path().join("link");
        symlink(&real, &link).unwrap();
        assert_eq!(open_state_dir(&link, ERR_CHECKPOINT_LOCKED).unwrap_err().code, ERR_UNSAFE_DIRECTORY);

        fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
        let err = open_state_dir(&real, ERR_CHECKPOINT_LOCKED).unwrap_err();
        assert_eq!(err.code, ERR_UNSAFE_DIRECTORY);
        assert!(err.message.contains("755"), "{err}");

        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(open_state_dir(&real, ERR_CHECKPOINT_LOCKED).is_ok());

        let file = root.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert_eq!(open_state_dir(&file, ERR_CHECKPOINT_LOCKED).unwrap_err().code, ERR_UNSAFE_DIRECTORY);

        let lock_link = root.path().join("lock-link");
        fs::create_dir(&lock_link).unwrap();
        fs::set_permissions(&lock_link, fs::Permissions::from_mode(0o700)).unwrap();
        symlink(&file, lock_link.join(LOCK_FILE_NAME)).unwrap();
        assert_eq!(open_state_dir(&lock_link, ERR_CHECKPOINT_LOCKED).unwrap_err().code, ERR_UNSAFE_DIRECTORY);
    }

    #[test]
    fn second_open_is_locked_until_the_first_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state");
        let first = open_state_dir(&path, ERR_CHECKPOINT_LOCKED).unwrap();
        assert_eq!(open_state_dir(&path, ERR_CHECKPOINT_LOCKED).unwrap_err().code, ERR_CHECKPOINT_LOCKED);
        assert_eq!(open_state_dir(&path, ERR_INCIDENT_LOG_LOCKED).unwrap_err().code, ERR_INCIDENT_LOG_LOCKED);
        drop(first);
        assert!(open_state_dir(&path, ERR_CHECKPOINT_LOCKED).is_ok());
    }

    #[test]
    fn a_lock_that_is_not_a_regular_file_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        mkfifo(&path.join(LOCK_FILE_NAME));
        assert_eq!(open_state_dir(&path, ERR_CHECKPOINT_LOCKED).unwrap_err().code, ERR_UNSAFE_DIRECTORY);
    }
}
