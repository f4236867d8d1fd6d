//! The I/O layer of durable state: every step that changes the disk goes through
//! [`Storage`], which counts it, carries the "persistence degraded" flag and, in tests
//! only (`cfg(test)` or the `fault-injection` feature), can inject faults.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::error::{DurableError, ERR_PERSIST_FAILED};
#[cfg(any(test, feature = "fault-injection"))]
use super::fault::{injected, ArmedPlan, FaultKind, FaultPlan};
pub use super::io_op::IoOp;
use super::io_op::IO_OPS;
use crate::durable::dir::DirHandle;
use crate::sync::lock;
#[cfg(not(any(test, feature = "fault-injection")))]
use no_faults::{injected, FaultKind};

/// Without fault injection no fault exists: the type has no values and every path that
/// would inject one is unreachable.
#[cfg(not(any(test, feature = "fault-injection")))]
mod no_faults {
    use super::super::io_op::IoOp;

    #[derive(Debug, Clone, Copy)]
    pub(super) enum FaultKind {}

    impl FaultKind {
        pub(super) fn writes_half(self) -> bool {
            match self {}
        }
    }

    pub(super) fn injected(_: IoOp, kind: FaultKind) -> std::io::Error {
        match kind {}
    }
}

struct StorageInner {
    #[cfg(any(test, feature = "fault-injection"))]
    plan: Mutex<Option<ArmedPlan>>,
    counts: [AtomicU64; IO_OPS.len()],
    /// Whether `degraded` holds a failure: read on every durable write without the lock.
    is_degraded: AtomicBool,
    degraded: Mutex<Option<Degraded>>,
}

/// Why persistence is degraded, and for which family of files (`checkpoint`, `journal`,
/// `incidents`: a file name up to its first `-`).
struct Degraded {
    family: String,
    reason: String,
}

fn file_family(name: &str) -> &str {
    name.split('-').next().unwrap_or(name)
}

/// The I/O layer of durable state. Production: [`Storage::new`], plain syscalls. Tests
/// install a fault plan. It also counts steps and carries the "persistence degraded"
/// flag, set when a write failed even after the rewrite (clones share all of this).
#[derive(Clone)]
pub struct Storage {
    inner: Arc<StorageInner>,
}

impl Default for Storage {
    fn default() -> Self {
        Storage::new()
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage").field("degraded", &self.degraded_reason()).finish()
    }
}

impl Storage {
    /// Real syscalls, no faults.
    pub fn new() -> Self {
        Storage {
            inner: Arc::new(StorageInner {
                #[cfg(any(test, feature = "fault-injection"))]
                plan: Mutex::new(None),
                counts: Default::default(),
                is_degraded: AtomicBool::new(false),
                degraded: Mutex::new(None),
            }),
        }
    }

    /// Real syscalls, failing where `plan` says.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn with_faults(plan: FaultPlan) -> Self {
        let storage = Storage::new();
        storage.set_fault_plan(plan);
        storage
    }

    /// Installs `plan`; its step numbers count from now.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        *lock(&self.inner.plan) = Some(ArmedPlan::new(plan));
    }

    #[cfg(any(test, feature = "fault-injection"))]
    pub fn clear_fault_plan(&self) {
        *lock(&self.inner.plan) = None;
    }

    /// How many steps of kind `op` were attempted through this storage (faulted ones too).
    pub fn op_count(&self, op: IoOp) -> u64 {
        self.inner.counts[op.index()].load(Ordering::Relaxed)
    }

    /// Whether a durable write has failed even after its rewrite, and no write of the same
    /// family of files has succeeded since (a disk that filled up and was freed clears it;
    /// a small journal append succeeding does not vouch for checkpoints).
    pub fn is_degraded(&self) -> bool {
        self.inner.is_degraded.load(Ordering::Acquire)
    }

    /// The failure that made persistence degraded, while it is.
    pub fn degraded_reason(&self) -> Option<String> {
        lock(&self.inner.degraded).as_ref().map(|d| d.reason.clone())
    }

    /// The error for a write of file `name` that failed after its one rewrite; marks degraded.
    pub(crate) fn persist_failed(&self, name: &str, message: String) -> DurableError {
        let mut degraded = lock(&self.inner.degraded);
        degraded.get_or_insert_with(|| Degraded { family: file_family(name).to_owned(), reason: message.clone() });
        self.inner.is_degraded.store(true, Ordering::Release);
        DurableError::new(ERR_PERSIST_FAILED, message)
    }

    /// A write of file `name` is durable: persistence of its family works again.
    pub(crate) fn persisted(&self, name: &str) {
        if !self.is_degraded() {
            return; // the common case: no lock
        }
        let mut degraded = lock(&self.inner.degraded);
        if degraded.as_ref().is_some_and(|d| d.family == file_family(name)) {
            *degraded = None;
            self.inner.is_degraded.store(false, Ordering::Release);
        }
    }

    /// Counts the step and, with fault injection, applies any delay and returns the fault
    /// to inject.
    fn step(&self, op: IoOp) -> Option<FaultKind> {
        self.inner.counts[op.index()].fetch_add(1, Ordering::Relaxed);
        #[cfg(any(test, feature = "fault-injection"))]
        {
            let (fault, delay) = lock(&self.inner.plan).as_mut().map_or((None, None), |armed| armed.step(op));
            if let Some(delay) = delay {
                std::thread::sleep(delay);
            }
            fault
        }
        #[cfg(not(any(test, feature = "fault-injection")))]
        None
    }

    /// Creates file `name` in `dir`, mode 0600, failing if the name exists (as anything,
    /// a symlink included).
    pub(crate) fn create_new(&self, dir: &DirHandle, name: &str) -> io::Result<File> {
        if let Some(kind) = self.step(IoOp::Create) {
            return Err(injected(IoOp::Create, kind));
        }
        dir.open_file(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)
    }

    /// Opens existing regular file `name` in `dir` for appending.
    pub(crate) fn open_append(&self, dir: &DirHandle, name: &str) -> io::Result<File> {
        dir.open_file(name, libc::O_WRONLY | libc::O_APPEND, 0)
    }

    pub(crate) fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        match self.step(IoOp::Write) {
            None => file.write_all(bytes),
            Some(kind) => {
                if kind.writes_half() {
                    file.write_all(&bytes[..bytes.len() / 2])?;
                }
                Err(injected(IoOp::Write, kind))
            }
        }
    }

    /// fsync: data and metadata (new files).
    pub(crate) fn sync_all(&self, file: &File) -> io::Result<()> {
        match self.step(IoOp::Sync) {
            None => file.sync_all(),
            Some(kind) => Err(injected(IoOp::Sync, kind)),
        }
    }

    /// fdatasync: data and the size (appends).
    pub(crate) fn sync_data(&self, file: &File) -> io::Result<()> {
        match self.step(IoOp::Sync) {
            None => file.sync_data(),
            Some(kind) => Err(injected(IoOp::Sync, kind)),
        }
    }

    /// Renames `from` to `to` inside `dir`.
    pub(crate) fn rename(&self, dir: &DirHandle, from: &str, to: &str) -> io::Result<()> {
        match self.step(IoOp::Rename) {
            None => dir.rename(from, to),
            Some(kind) => Err(injected(IoOp::Rename, kind)),
        }
    }

    pub(crate) fn sync_dir(&self, dir: &DirHandle) -> io::Result<()> {
        match self.step(IoOp::SyncDir) {
            None => dir.sync(),
            Some(kind) => Err(injected(IoOp::SyncDir, kind)),
        }
    }

    /// Truncates to `len` and fsyncs, so the cut is durable before anything is appended.
    pub(crate) fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        match self.step(IoOp::Truncate) {
            None => file.set_len(len)?,
            Some(kind) => return Err(injected(IoOp::Truncate, kind)),
        }
        self.sync_all(file)
    }

    /// Removes `name` from `dir` (a symlink itself, never its target).
    pub(crate) fn remove_file(&self, dir: &DirHandle, name: &str) -> io::Result<()> {
        dir.remove(name)
    }
}
