//! Scratch directories for state directories (stores require 0700 directories they own).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// A root for many state directories: tmpfs where there is one, since every journal and
/// incident-log open fsyncs (thousands of cases would take minutes on a disk).
pub fn scratch_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("hpc-health-test-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

/// A fresh 0700 directory holding one file `name` with `bytes`.
pub fn state_dir_with(root: &Path, case: usize, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = root.join(format!("case-{case}"));
    fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
    dir
}

/// A sparse file of `len` bytes (no disk used): reading it whole would show up in memory.
pub fn sparse_file(path: &Path, len: u64) {
    fs::File::create(path).unwrap().set_len(len).unwrap();
}

pub const SPARSE_BYTES: u64 = 4 << 30;
