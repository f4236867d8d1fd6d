//! The one module that owns every file protocol: durable whole-file writes, durable
//! appends, bounded reads, safe and locked state directories, setting damaged files
//! aside, and the error type. Everything else in `durable` reaches the disk through
//! [`Storage`], which is real syscalls in production and can inject faults in tests.
//!
//! The rules, and why:
//! - A whole file is written to a new `.tmp-…` file in the same directory, fsynced,
//!   renamed into place and the directory fsynced; only then is it durable. A crash at any
//!   point leaves either the old state or the new, never a torn file under a final name.
//! - A failed fsync is never retried on the same file: after one, the kernel may already
//!   have dropped the dirty pages and a second fsync would report success for data that is
//!   gone. The content is rewritten from memory into a new file, once; a second failure is
//!   `ERR_PERSIST_FAILED` and marks the [`Storage`] degraded.
//! - A state directory is opened and checked once; every file in it is then reached
//!   through that handle (`durable::dir`), never by path: swapping the path for a symlink
//!   afterwards redirects nothing. No symlink is followed and only regular files are opened.
//! - Only names a writer here produces, on regular files, count for sequencing; numbers
//!   stay within [`MAX_SEQUENCE`]. Anything else under a family's name is set aside on open
//!   and reported (`set_aside_foreign`), so no planted file can stop the writer.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::defaults::{CORRUPT_FILES_KEPT, MAX_SEQUENCE};
use super::dir::{DirEntry, DirHandle};

// ---------------------------------------------------------------------------------------
// Errors

/// Writing durably failed twice (the rewrite-once rule); persistence is degraded.
pub const ERR_PERSIST_FAILED: &str = "ERR_PERSIST_FAILED";
/// A file or record is larger than allowed.
pub const ERR_TOO_LARGE: &str = "ERR_TOO_LARGE";
/// A state directory is a symlink, not ours, or open to group/other.
pub const ERR_UNSAFE_DIRECTORY: &str = "ERR_UNSAFE_DIRECTORY";
/// The checkpoint (or journal) directory is locked by another open.
pub const ERR_CHECKPOINT_LOCKED: &str = "ERR_CHECKPOINT_LOCKED";
/// The incident-log directory is locked by another open.
pub const ERR_INCIDENT_LOG_LOCKED: &str = "ERR_INCIDENT_LOG_LOCKED";
/// A file is damaged (checksum, length, format or JSON).
pub const ERR_CORRUPT: &str = "ERR_CORRUPT";
/// No such checkpoint / operation.
pub const ERR_NOT_FOUND: &str = "ERR_NOT_FOUND";
/// A checkpoint or operation id that is not well formed.
pub const ERR_INVALID_ID: &str = "ERR_INVALID_ID";
/// Any other I/O error.
pub const ERR_IO: &str = "ERR_IO";
/// `begin_operation` of an id that is already active.
pub const ERR_DUPLICATE: &str = "ERR_DUPLICATE";
/// Checkpoint retention below the minimum.
pub const ERR_INVALID_RETAIN: &str = "ERR_INVALID_RETAIN";
/// An option or argument out of range (other than retain).
pub const ERR_INVALID_ARGUMENT: &str = "ERR_INVALID_ARGUMENT";
/// JSON handed in to be stored does not parse or nests too deep.
pub const ERR_INVALID_JSON: &str = "ERR_INVALID_JSON";

/// The one error type of durable state: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableError {
    pub code: &'static str,
    pub message: String,
}

impl DurableError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        DurableError { code, message: message.into() }
    }

    /// An I/O error that is not a durability failure (listing a directory, opening a file).
    pub(crate) fn io(context: impl fmt::Display, err: &io::Error) -> Self {
        DurableError::new(ERR_IO, format!("{context}: {err}"))
    }
}

impl fmt::Display for DurableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DurableError {}

pub type Result<T> = std::result::Result<T, DurableError>;

/// What went wrong in a file found on open (or read), and what was done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The end of an append-only file was incomplete or damaged with nothing valid after
    /// it: an interrupted write. It was truncated away.
    TornTail,
    /// Damage followed by more valid data: not an interrupted write. For the journal,
    /// replay stopped there and the file was set aside; for the incident log, the bad
    /// line was skipped.
    MidFileCorruption,
    /// A record that is intact but contradicts what came before (e.g. `end` of an
    /// operation never begun, a sequence number going backwards). It was ignored.
    InconsistentRecord,
    /// A file under the family's name that this writer did not produce (a name it never
    /// writes, a sequence number past the bound, or a symlink, directory, FIFO or device):
    /// set aside, never opened or counted on from.
    ForeignFile,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::TornTail => "torn_tail",
            ProblemKind::MidFileCorruption => "mid_file_corruption",
            ProblemKind::InconsistentRecord => "inconsistent_record",
            ProblemKind::ForeignFile => "foreign_file",
        }
    }
}

/// A problem found while reading back an append-only file, for the caller to report
/// (as an incident, in a `skipped`/`problems` list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryProblem {
    pub kind: ProblemKind,
    /// The file's name inside its directory.
    pub file: String,
    /// Byte offset in the file where the problem starts.
    pub offset: u64,
    pub reason: String,
    /// The name the damaged file was renamed to, where it was set aside.
    pub set_aside_as: Option<String>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Storage and fault injection

/// The kinds of I/O step that go through [`Storage`], for counting and fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// Creating a new file (`O_CREAT|O_EXCL`).
    Create,
    Write,
    /// fsync / fdatasync of a file.
    Sync,
    Rename,
    /// fsync of a directory.
    SyncDir,
    /// Truncating a file (torn-tail repair).
    Truncate,
}

const IO_OPS: [IoOp; 6] = [IoOp::Create, IoOp::Write, IoOp::Sync, IoOp::Rename, IoOp::SyncDir, IoOp::Truncate];

impl IoOp {
    fn index(self) -> usize {
        self as usize
    }
}

/// How an injected fault fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `EIO`; the step is not performed.
    Eio,
    /// `ENOSPC`; for a write, the first half of the bytes is written first (a short
    /// write that then fails, as a full disk does).
    NoSpace,
}

/// Which I/O steps to fail, for tests. Step numbers count from 1, per kind of step,
/// from the moment the plan is installed on a [`Storage`].
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    faults: Vec<(IoOp, u64, FaultKind)>,
    delays: Vec<(IoOp, Duration)>,
}

impl FaultPlan {
    pub fn new() -> Self {
        FaultPlan::default()
    }

    /// Fail the `nth` step of kind `op` with `EIO`.
    pub fn fail(mut self, op: IoOp, nth: u64) -> Self {
        self.faults.push((op, nth, FaultKind::Eio));
        self
    }

    /// Fail the `nth` write with `ENOSPC` after writing half its bytes.
    pub fn no_space_on_write(mut self, nth: u64) -> Self {
        self.faults.push((IoOp::Write, nth, FaultKind::NoSpace));
        self
    }

    /// Make every step of kind `op` take at least `delay` (a slow disk), e.g. so that
    /// concurrent callers pile up behind one fsync.
    pub fn delay(mut self, op: IoOp, delay: Duration) -> Self {
        self.delays.push((op, delay));
        self
    }
}

struct ArmedPlan {
    plan: FaultPlan,
    seen: [u64; IO_OPS.len()],
}

struct StorageInner {
    plan: Mutex<Option<ArmedPlan>>,
    counts: [AtomicU64; IO_OPS.len()],
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
/// install a [`FaultPlan`]. It also counts steps and carries the "persistence degraded"
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

/// Locks a mutex, carrying on after a panic elsewhere: the state it guards is updated in
/// single steps, so it is consistent whenever the lock is free.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Storage {
    /// Real syscalls, no faults.
    pub fn new() -> Self {
        Storage {
            inner: Arc::new(StorageInner {
                plan: Mutex::new(None),
                counts: Default::default(),
                degraded: Mutex::new(None),
            }),
        }
    }

    /// Real syscalls, failing where `plan` says.
    pub fn with_faults(plan: FaultPlan) -> Self {
        let storage = Storage::new();
        storage.set_fault_plan(plan);
        storage
    }

    /// Installs `plan`; its step numbers count from now.
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        *lock(&self.inner.plan) = Some(ArmedPlan { plan, seen: [0; IO_OPS.len()] });
    }

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
        lock(&self.inner.degraded).is_some()
    }

    /// The failure that made persistence degraded, while it is.
    pub fn degraded_reason(&self) -> Option<String> {
        lock(&self.inner.degraded).as_ref().map(|d| d.reason.clone())
    }

    /// The error for a write of file `name` that failed after its one rewrite; marks degraded.
    pub(crate) fn persist_failed(&self, name: &str, message: String) -> DurableError {
        lock(&self.inner.degraded)
            .get_or_insert_with(|| Degraded { family: file_family(name).to_owned(), reason: message.clone() });
        DurableError::new(ERR_PERSIST_FAILED, message)
    }

    /// A write of file `name` is durable: persistence of its family works again.
    pub(crate) fn persisted(&self, name: &str) {
        let mut degraded = lock(&self.inner.degraded);
        if degraded.as_ref().is_some_and(|d| d.family == file_family(name)) {
            *degraded = None;
        }
    }

    /// Counts the step, applies any delay, and returns the fault to inject, if any.
    fn step(&self, op: IoOp) -> Option<FaultKind> {
        self.inner.counts[op.index()].fetch_add(1, Ordering::Relaxed);
        let (fault, delay) = {
            let mut armed = lock(&self.inner.plan);
            let armed = armed.as_mut()?;
            armed.seen[op.index()] += 1;
            let nth = armed.seen[op.index()];
            let fault = armed.plan.faults.iter().find(|(o, n, _)| *o == op && *n == nth).map(|f| f.2);
            let delay = armed.plan.delays.iter().find(|(o, _)| *o == op).map(|d| d.1);
            (fault, delay)
        };
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        fault
    }

    fn injected(op: IoOp, kind: FaultKind) -> io::Error {
        let errno = match kind {
            FaultKind::Eio => libc::EIO,
            FaultKind::NoSpace => libc::ENOSPC,
        };
        let err = io::Error::from_raw_os_error(errno);
        io::Error::new(err.kind(), format!("{err} (injected at {op:?})"))
    }

    /// Creates file `name` in `dir`, mode 0600, failing if the name exists (as anything,
    /// a symlink included).
    pub(crate) fn create_new(&self, dir: &StateDir, name: &str) -> io::Result<File> {
        if let Some(kind) = self.step(IoOp::Create) {
            return Err(Self::injected(IoOp::Create, kind));
        }
        dir.handle.open_file(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)
    }

    /// Opens existing regular file `name` in `dir` for appending.
    pub(crate) fn open_append(&self, dir: &StateDir, name: &str) -> io::Result<File> {
        dir.handle.open_file(name, libc::O_WRONLY | libc::O_APPEND, 0)
    }

    pub(crate) fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        match self.step(IoOp::Write) {
            None => file.write_all(bytes),
            Some(FaultKind::NoSpace) => {
                file.write_all(&bytes[..bytes.len() / 2])?;
                Err(Self::injected(IoOp::Write, FaultKind::NoSpace))
            }
            Some(kind) => Err(Self::injected(IoOp::Write, kind)),
        }
    }

    /// fsync: data and metadata (new files).
    pub(crate) fn sync_all(&self, file: &File) -> io::Result<()> {
        match self.step(IoOp::Sync) {
            None => file.sync_all(),
            Some(kind) => Err(Self::injected(IoOp::Sync, kind)),
        }
    }

    /// fdatasync: data and the size (appends).
    pub(crate) fn sync_data(&self, file: &File) -> io::Result<()> {
        match self.step(IoOp::Sync) {
            None => file.sync_data(),
            Some(kind) => Err(Self::injected(IoOp::Sync, kind)),
        }
    }

    /// Renames `from` to `to` inside `dir`.
    pub(crate) fn rename(&self, dir: &StateDir, from: &str, to: &str) -> io::Result<()> {
        match self.step(IoOp::Rename) {
            None => dir.handle.rename(from, to),
            Some(kind) => Err(Self::injected(IoOp::Rename, kind)),
        }
    }

    pub(crate) fn sync_dir(&self, dir: &DirHandle) -> io::Result<()> {
        match self.step(IoOp::SyncDir) {
            None => dir.sync(),
            Some(kind) => Err(Self::injected(IoOp::SyncDir, kind)),
        }
    }

    /// Truncates to `len` and fsyncs, so the cut is durable before anything is appended.
    pub(crate) fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        match self.step(IoOp::Truncate) {
            None => file.set_len(len)?,
            Some(kind) => return Err(Self::injected(IoOp::Truncate, kind)),
        }
        self.sync_all(file)
    }

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

    /// Removes `name` from `dir` (a symlink itself, never its target).
    pub(crate) fn remove_file(&self, dir: &StateDir, name: &str) -> io::Result<()> {
        dir.handle.remove(name)
    }
}

fn open_for_reading(dir: &StateDir, name: &str) -> Result<File> {
    dir.handle.open_file(name, libc::O_RDONLY, 0).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DurableError::new(ERR_NOT_FOUND, format!("{name} does not exist")),
        _ => DurableError::io(format!("opening {name} in {}", dir.path.display()), &e),
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

// ---------------------------------------------------------------------------------------
// State directories

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
    handle: DirHandle,
    /// Holds the `flock` on `LOCK`.
    _lock: File,
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
    Ok(StateDir { path: path.to_path_buf(), handle, _lock: lock_file })
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

// ---------------------------------------------------------------------------------------
// Whole-file writes

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
        let _ = storage.remove_file(dir, &temp);
        return Err(e);
    }
    if let Err(e) = dir.sync(storage) {
        // Renamed but not known durable: take it back rather than leave a file whose
        // write was reported as failed.
        let _ = storage.remove_file(dir, name);
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
    storage.rename(dir, temp, target)
}

fn create_temp(storage: &Storage, dir: &StateDir, name: &str) -> io::Result<(String, File)> {
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = format!("{TEMP_PREFIX}{name}-{}-{n}", std::process::id());
        match storage.create_new(dir, &temp) {
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
            match storage.remove_file(dir, &entry.name) {
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
        let _ = storage.remove_file(dir, name);
    }
    let _ = dir.sync(storage);
}

// ---------------------------------------------------------------------------------------
// Appends

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
        let file = storage.open_append(dir, name).map_err(|e| DurableError::io(format!("opening {name}"), &e))?;
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

// ---------------------------------------------------------------------------------------
// Setting damaged files aside

/// Names of damaged files set aside: `corrupt-{original name}-{n}`, `n` counting up over
/// the directory so the newest are known without trusting mtimes.
pub const CORRUPT_PREFIX: &str = "corrupt-";

/// Renames damaged file `name` aside and keeps only the newest [`CORRUPT_FILES_KEPT`]
/// aside files of its `family` (e.g. `checkpoint-`). Returns the new name. Works for
/// whatever `name` is (a symlink is renamed, not followed). Counting only aside names this
/// writer produces, a planted number past [`MAX_SEQUENCE`] is never taken up; one at it
/// leaves nothing to count on to, and the file stays in place (`ERR_INVALID_ARGUMENT`).
pub(crate) fn set_aside(storage: &Storage, dir: &StateDir, name: &str, family: &str) -> Result<String> {
    let entries = dir.list()?;
    let asides: Vec<(&str, u64, &str)> =
        entries.iter().filter_map(|e| parse_aside_name(&e.name).map(|(orig, n)| (orig, n, e.name.as_str()))).collect();
    let next = asides.iter().map(|&(_, n, _)| n).max().unwrap_or(0) + 1;
    if next > MAX_SEQUENCE {
        return Err(DurableError::new(
            ERR_INVALID_ARGUMENT,
            format!("cannot set {name} aside: aside numbers are exhausted at {MAX_SEQUENCE}"),
        ));
    }
    let aside = format!("{CORRUPT_PREFIX}{name}-{next}");
    storage.rename(dir, name, &aside).map_err(|e| DurableError::io(format!("setting {name} aside"), &e))?;

    let mut family_asides: Vec<(u64, &str)> =
        asides.iter().filter(|(orig, _, _)| orig.starts_with(family)).map(|&(_, n, full)| (n, full)).collect();
    family_asides.sort_unstable_by_key(|&(n, _)| std::cmp::Reverse(n));
    // The new one is the newest; keep it and CORRUPT_FILES_KEPT - 1 of the earlier ones.
    for (_, old) in family_asides.iter().skip(CORRUPT_FILES_KEPT.saturating_sub(1)) {
        let _ = storage.remove_file(dir, old);
    }
    let _ = dir.sync(storage);
    Ok(aside)
}

/// `corrupt-{original}-{n}` → (original, n), for names [`set_aside`] produces: `n` in
/// 1..=[`MAX_SEQUENCE`], written without leading zeros or sign.
pub(crate) fn parse_aside_name(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_prefix(CORRUPT_PREFIX)?;
    let (original, n) = rest.rsplit_once('-')?;
    Some((original, parse_counter(n)?))
}

/// A number as this module writes one (`{n}`): decimal digits, no sign, no leading zero,
/// 1..=[`MAX_SEQUENCE`].
pub(crate) fn parse_counter(digits: &str) -> Option<u64> {
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n <= MAX_SEQUENCE)
}

/// A sequence number in a file name as this module writes one (`{n:020}`): exactly 20
/// decimal digits, 1..=[`MAX_SEQUENCE`]. `Err` for the right shape holding a number no
/// writer here produces (0, or past the bound).
pub(crate) fn parse_padded_seq(digits: &str) -> Option<std::result::Result<u64, String>> {
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match digits.parse::<u64>() {
        Ok(n) if (1..=MAX_SEQUENCE).contains(&n) => Ok(n),
        _ => Err(format!("sequence number {digits} is outside 1..={MAX_SEQUENCE}, which this writer never produces")),
    })
}

/// How a directory entry stands to a family of files named `{prefix}{n:020}{suffix}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    /// A regular file under a name the writer produces: sequence number `n`.
    Ours(u64),
    /// Under the family's prefix, but not something its writer produces (the name, or a
    /// symlink, directory, FIFO or device): never opened or counted; set aside.
    Foreign(String),
    /// Not of this family.
    Other,
}

impl Member {
    /// The sequence number of a file of ours.
    pub(crate) fn ours(self) -> Option<u64> {
        match self {
            Member::Ours(n) => Some(n),
            Member::Foreign(_) | Member::Other => None,
        }
    }
}

pub(crate) fn classify(entry: &DirEntry, prefix: &str, suffix: &str) -> Member {
    let Some(rest) = entry.name.strip_prefix(prefix) else { return Member::Other };
    match rest.strip_suffix(suffix).and_then(parse_padded_seq) {
        None => Member::Foreign(format!("{} is not a name this writer produces", entry.name)),
        Some(Err(reason)) => Member::Foreign(reason),
        Some(Ok(_)) if !entry.is_file => Member::Foreign(format!("{} is not a regular file", entry.name)),
        Some(Ok(n)) => Member::Ours(n),
    }
}

/// A file under a family's name that its writer did not produce, found on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForeignFile {
    pub name: String,
    pub reason: String,
    /// Where it was renamed to; `None` if that failed (the reason then says why).
    pub set_aside_as: Option<String>,
}

impl ForeignFile {
    pub(crate) fn into_problem(self) -> RecoveryProblem {
        RecoveryProblem {
            kind: ProblemKind::ForeignFile,
            file: self.name,
            offset: 0,
            reason: self.reason,
            set_aside_as: self.set_aside_as,
        }
    }
}

/// Sets aside every entry under `prefix` that is not a regular file under a name this
/// family's writer produces, so nothing later opens it or counts on from its number.
pub(crate) fn set_aside_foreign(
    storage: &Storage,
    dir: &StateDir,
    prefix: &str,
    suffix: &str,
) -> Result<Vec<ForeignFile>> {
    let mut found = Vec::new();
    for entry in dir.list()? {
        let Member::Foreign(reason) = classify(&entry, prefix, suffix) else { continue };
        found.push(set_aside_foreign_file(storage, dir, entry.name, prefix, reason));
    }
    Ok(found)
}

/// Sets `name` (of `family`, not written by its writer for `reason`) aside, saying so.
pub(crate) fn set_aside_foreign_file(
    storage: &Storage,
    dir: &StateDir,
    name: String,
    family: &str,
    reason: String,
) -> ForeignFile {
    match set_aside(storage, dir, &name, family) {
        Ok(aside) => ForeignFile { name, reason, set_aside_as: Some(aside) },
        Err(e) => ForeignFile { name, reason: format!("{reason} (could not set it aside: {e})"), set_aside_as: None },
    }
}

/// Digits of the sequence numbers in file names.
pub(crate) const SEQ_DIGITS: usize = 20;

// ---------------------------------------------------------------------------------------
// JSON read back

/// Whether `bytes` nest JSON arrays/objects deeper than `max_depth`. A plain scan (no
/// recursion), so it is safe to run on hostile input before a recursive parser sees it.
pub fn json_nesting_exceeds(bytes: &[u8], max_depth: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Checks that `bytes` are one JSON value nesting at most `max_depth` deep.
pub fn validate_json(bytes: &[u8], max_depth: usize) -> std::result::Result<(), String> {
    if json_nesting_exceeds(bytes, max_depth) {
        return Err(format!("JSON nests deeper than {max_depth} levels"));
    }
    // Parsed into a `Value`, not skimmed: skimming lets lone surrogates and invalid UTF-8
    // inside strings through, which a reader parsing the data would then refuse.
    serde_json::from_slice::<serde_json::Value>(bytes).map(|_| ()).map_err(|e| format!("not valid JSON: {e}"))
}

/// Parses `bytes` into `T` after the depth check.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max_depth: usize,
) -> std::result::Result<T, String> {
    if json_nesting_exceeds(bytes, max_depth) {
        return Err(format!("JSON nests deeper than {max_depth} levels"));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))
}

/// Step counts by kind, for tests.
#[cfg(test)]
pub(crate) fn op_counts(storage: &Storage) -> std::collections::HashMap<IoOp, u64> {
    IO_OPS.iter().map(|&op| (op, storage.op_count(op))).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

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

    fn temp_names(dir: &Path) -> Vec<String> {
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

    fn state_dir(root: &tempfile::TempDir) -> StateDir {
        open_state_dir(&root.path().join("state"), ERR_CHECKPOINT_LOCKED).unwrap()
    }

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

    #[test]
    fn set_aside_keeps_newest_three_per_family() {
        let root = tempfile::tempdir().unwrap();
        let dir = state_dir(&root);
        let storage = Storage::new();
        let mut asides = Vec::new();
        for i in 0..5 {
            let name = format!("checkpoint-{i}");
            fs::write(dir.file(&name), b"bad").unwrap();
            asides.push(set_aside(&storage, &dir, &name, "checkpoint-").unwrap());
        }
        fs::write(dir.file("journal-1"), b"bad").unwrap();
        let journal_aside = set_aside(&storage, &dir, "journal-1", "journal-").unwrap();
        assert_eq!(asides[0], "corrupt-checkpoint-0-1");
        assert_eq!(journal_aside, "corrupt-journal-1-6");
        let mut left: Vec<String> =
            dir.list().unwrap().into_iter().map(|e| e.name).filter(|n| n.starts_with(CORRUPT_PREFIX)).collect();
        left.sort();
        assert_eq!(
            left,
            vec!["corrupt-checkpoint-2-3", "corrupt-checkpoint-3-4", "corrupt-checkpoint-4-5", "corrupt-journal-1-6"]
        );
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

    /// The aside counter counts on only from numbers set_aside writes: a planted
    /// `corrupt-…-18446744073709551615` (or `-007`, `-+9`) is not one of them.
    #[test]
    fn set_aside_ignores_counters_it_did_not_write() {
        let root = tempfile::tempdir().unwrap();
        let dir = state_dir(&root);
        let storage = Storage::new();
        for planted in ["corrupt-a-18446744073709551615", "corrupt-b-007", "corrupt-c-+9", "corrupt-d-9007199254740992"]
        {
            fs::write(dir.file(planted), b"x").unwrap();
        }
        fs::write(dir.file("f-1"), b"bad").unwrap();
        assert_eq!(set_aside(&storage, &dir, "f-1", "f-").unwrap(), "corrupt-f-1-1");
        // At the bound there is no number left to count on to: refused, the file stays.
        fs::write(dir.file("corrupt-e-9007199254740991"), b"x").unwrap();
        fs::write(dir.file("f-2"), b"bad").unwrap();
        assert_eq!(set_aside(&storage, &dir, "f-2", "f-").unwrap_err().code, ERR_INVALID_ARGUMENT);
        assert!(dir.file("f-2").exists());
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

    #[test]
    fn json_depth_limit_is_explicit() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(validate_json(deep(100).as_bytes(), 100).is_ok());
        assert!(validate_json(deep(101).as_bytes(), 100).unwrap_err().contains("deeper"));
        // Brackets inside strings do not count; escaped quotes do not end the string.
        let text = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(validate_json(text.as_bytes(), 2).is_ok());
        assert!(validate_json(b"{\"a\":1", 100).unwrap_err().contains("not valid JSON"));
        assert!(validate_json(b"{} {}", 100).is_err());
        // Deep input never reaches the recursive parser.
        let hostile = "[".repeat(1_000_000);
        assert!(parse_json::<serde_json::Value>(hostile.as_bytes(), 100).unwrap_err().contains("deeper"));
    }
}
