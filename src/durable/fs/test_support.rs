//! What the durable tests share: fault plans for each step of a whole-file write, scratch
//! state directories, and ways to plant what an attacker could (FIFOs, swapped symlinks).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::io_op::IO_OPS;
use super::{open_state_dir, FaultPlan, IoOp, StateDir, Storage, ERR_CHECKPOINT_LOCKED, TEMP_PREFIX};

/// Step counts by kind.
pub(crate) fn op_counts(storage: &Storage) -> HashMap<IoOp, u64> {
    IO_OPS.iter().map(|&op| (op, storage.op_count(op))).collect()
}

/// Adds a fault at the nth step of some kind to a plan.
pub(crate) type AddFault = fn(FaultPlan, u64) -> FaultPlan;

/// Each step of a whole-file write, with how to fail it.
pub(crate) const FAULT_STEPS: [(&str, AddFault); 5] = [
    ("write", |plan, n| plan.fail(IoOp::Write, n)),
    ("enospc", |plan, n| plan.no_space_on_write(n)),
    ("fsync", |plan, n| plan.fail(IoOp::Sync, n)),
    ("rename", |plan, n| plan.fail(IoOp::Rename, n)),
    ("dir fsync", |plan, n| plan.fail(IoOp::SyncDir, n)),
];

pub(crate) fn temp_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect()
}

pub(crate) fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// Replaces state directory `dir` (open elsewhere) by a symlink to a new, empty, safe
/// directory, as someone with access to its parent could. Returns (where the real
/// directory went, the symlink's target).
pub(crate) fn swap_for_symlink(dir: &Path) -> (PathBuf, PathBuf) {
    let moved = dir.with_extension("moved");
    let elsewhere = dir.with_extension("elsewhere");
    fs::rename(dir, &moved).unwrap();
    fs::create_dir(&elsewhere).unwrap();
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o700)).unwrap();
    symlink(&elsewhere, dir).unwrap();
    (moved, elsewhere)
}

/// The names in a directory, sorted.
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

pub(crate) fn state_dir(root: &tempfile::TempDir) -> StateDir {
    open_state_dir(&root.path().join("state"), ERR_CHECKPOINT_LOCKED).unwrap()
}
