//! Bounded reads: a file is never read past its limit, and nothing but a regular file is
//! opened (a symlink or FIFO under a state file's name is an error, never followed).

use std::fs::File;
use std::io::{self, Read};

use super::error::{DurableError, Result, ERR_NOT_FOUND, ERR_TOO_LARGE};
use super::state_dir::StateDir;
use super::storage::Storage;

impl Storage {
    /// Reads the whole of file `name` in `dir`, refusing (before reading) one over
    /// `max_bytes`. `ERR_NOT_FOUND` when it does not exist; `ERR_IO` for a symlink or
    /// anything else that is not a regular file (never followed or opened).
    pub(crate) fn read_bounded(&self, dir: &StateDir, name: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let file = open_for_reading(dir, name)?;
        let size = file.metadata().map_err(|e| DurableError::io(format!("stat {name}"), &e))?.len();
        if size > max_bytes {
            return Err(too_large(name, size, max_bytes));
        }
        let bytes = read_at_most(file, name, size.min(max_bytes), max_bytes + 1)?;
        if bytes.len() as u64 > max_bytes {
            return Err(too_large(name, bytes.len() as u64, max_bytes));
        }
        Ok(bytes)
    }

    /// The first (at most) `n` bytes of regular file `name` in `dir`.
    pub(crate) fn read_head(&self, dir: &StateDir, name: &str, n: u64) -> Result<Vec<u8>> {
        read_at_most(open_for_reading(dir, name)?, name, n, n)
    }
}

fn open_for_reading(dir: &StateDir, name: &str) -> Result<File> {
    dir.handle.open_file(name, libc::O_RDONLY, 0).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DurableError::new(ERR_NOT_FOUND, format!("{name} does not exist")),
        _ => DurableError::io(format!("opening {name} in {}", dir.path().display()), &e),
    })
}

/// Reads at most `limit` bytes (`take` keeps the bound even if the file grew meanwhile).
fn read_at_most(file: File, name: &str, capacity: u64, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(capacity as usize);
    file.take(limit).read_to_end(&mut bytes).map_err(|e| DurableError::io(format!("reading {name}"), &e))?;
    Ok(bytes)
}

fn too_large(name: &str, size: u64, max_bytes: u64) -> DurableError {
    DurableError::new(ERR_TOO_LARGE, format!("{name} is {size} bytes, more than the limit of {max_bytes}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::fs::test_support::{mkfifo, state_dir};
    use crate::durable::fs::ERR_IO;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn bounded_read_checks_size_first() {
        let root = tempfile::tempdir().unwrap();
        let dir = state_dir(&root);
        fs::write(dir.file("big"), vec![b'x'; 100]).unwrap();
        let storage = Storage::new();
        assert_eq!(storage.read_bounded(&dir, "big", 99).unwrap_err().code, ERR_TOO_LARGE);
        assert_eq!(storage.read_bounded(&dir, "big", 100).unwrap().len(), 100);
        assert_eq!(storage.read_bounded(&dir, "none", 100).unwrap_err().code, ERR_NOT_FOUND);
        symlink(dir.file("big"), dir.file("link")).unwrap();
        assert_eq!(storage.read_bounded(&dir, "link", 100).unwrap_err().code, ERR_IO);
        mkfifo(&dir.file("fifo"));
        assert_eq!(storage.read_bounded(&dir, "fifo", 100).unwrap_err().code, ERR_IO, "no hang on a FIFO");
    }
}
