//! What the fuzz targets share: a state directory holding one crafted file.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// A fresh root on tmpfs where there is one: every open of a journal or incident log
/// fsyncs, and a fuzzer runs thousands of them a second.
pub fn scratch_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("hpc-health-fuzz-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}

/// `root/state` (0700, as the stores require) holding `name` with `bytes`.
pub fn state_dir_with(root: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = root.join("state");
    fs::DirBuilder::new().mode(0o700).create(&dir).expect("state directory");
    fs::write(dir.join(name), bytes).expect("crafted file");
    dir
}
