//! Durable appends: written whole and fdatasynced before they count.

use std::fs::File;
use std::io;

use super::error::{DurableError, Result};
use super::state_dir::StateDir;
use super::storage::Storage;

/// A file appended to durably: each append is written whole and fdatasynced before it
/// counts. `len` is the durable length; bytes past it (from a failed append) are not
/// trusted, and the owner switches to a new file instead of appending after them.
#[derive(Debug)]
pub(crate) struct AppendFile {
    file: File,
    name: String,
    len: u64,
}

impl AppendFile {
    pub(crate) fn open(storage: &Storage, dir: &StateDir, name: &str) -> Result<Self> {
        let file =
            storage.open_append(&dir.handle, name).map_err(|e| DurableError::io(format!("opening {name}"), &e))?;
        let len = file.metadata().map_err(|e| DurableError::io(format!("stat {name}"), &e))?.len();
        Ok(AppendFile { file, name: name.to_owned(), len })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// write + fdatasync. On error the file's tail is unknown: do not append again.
    pub(crate) fn append(&mut self, storage: &Storage, bytes: &[u8]) -> io::Result<()> {
        storage.write_all(&mut self.file, bytes)?;
        storage.sync_data(&self.file)?;
        self.len += bytes.len() as u64;
        storage.persisted(&self.name);
        Ok(())
    }

    /// Cuts the file back to `len` bytes, durably.
    pub(crate) fn truncate_to(&mut self, storage: &Storage, len: u64) -> io::Result<()> {
        storage.truncate(&self.file, len)?;
        self.len = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::fs::test_support::state_dir;
    use crate::durable::fs::{write_file_durable, FaultPlan, IoOp};
    use std::fs;

    #[test]
    fn append_then_truncate() {
        let root = tempfile::tempdir().unwrap();
        let dir = state_dir(&root);
        let storage = Storage::new();
        write_file_durable(&storage, &dir, "log", b"").unwrap();
        let mut file = AppendFile::open(&storage, &dir, "log").unwrap();
        file.append(&storage, b"abc").unwrap();
        file.append(&storage, b"def").unwrap();
        assert_eq!(file.len(), 6);
        file.truncate_to(&storage, 4).unwrap();
        assert_eq!(fs::read(dir.file("log")).unwrap(), b"abcd");

        storage.set_fault_plan(FaultPlan::new().fail(IoOp::Sync, 1));
        assert!(file.append(&storage, b"zz").is_err());
        assert_eq!(file.len(), 4, "a failed append does not count");
    }
}
