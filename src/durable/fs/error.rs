//! The one error type of durable state, its stable codes, and the problems reported when
//! files read back were damaged or not ours.

use std::fmt;
use std::io;

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
/// The metrics-history directory is being written by another open.
pub const ERR_HISTORY_LOCKED: &str = "ERR_HISTORY_LOCKED";
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
