//! Durable state: `fs` owns every file protocol; checkpoints, the operation journal and the incident log build on it.
//!
//! - [`fs`]: durable whole-file writes (temp, fsync, rename, directory fsync; rewrite
//!   once on failure), durable appends, bounded reads, safe locked state directories, the
//!   error type and codes, and the [`Storage`] I/O layer (fault injection for tests only),
//!   one concern a file.
//! - `dir`: a directory used only through the handle opened and checked once (`openat`,
//!   `renameat`, `unlinkat`, `fdopendir`); never follows a symlink or opens what is not a
//!   regular file.
//! - [`checkpoint`]: checksummed checkpoint generations; the newest valid one wins.
//! - [`journal`]: begun-and-not-ended operations, replayed on open.
//! - [`incident_log`]: JSON Lines incidents in segments, rate limited;
//!   the durable [`crate::incident::IncidentSink`].
//! - [`log`]: the segmented-log engine the journal and the incident log share (numbered
//!   files, failed append → new file, group commit on a writer thread).
//! - [`format`]: the on-disk format of all of it, in one place.
//! - [`defaults`]: every policy number.
//!
//! Plain Rust: nothing here knows of JavaScript.

pub mod checkpoint;
pub mod closable;
pub mod defaults;
pub(crate) mod dir;
pub mod format;
pub mod fs;
pub mod incident_log;
pub mod journal;
pub mod log;
pub mod manager;

pub use checkpoint::{Checkpoint, CheckpointMeta, CheckpointStore, LatestValid, SkippedFile};
pub use fs::{
    open_state_dir, open_state_dir_read_only, DurableError, IoOp, ProblemKind, RecoveryProblem, Result, StateDir,
    Storage, ERR_CHECKPOINT_LOCKED, ERR_CORRUPT, ERR_DUPLICATE, ERR_HISTORY_LOCKED, ERR_INCIDENT_LOG_LOCKED,
    ERR_INVALID_ARGUMENT, ERR_INVALID_ID, ERR_INVALID_JSON, ERR_INVALID_RETAIN, ERR_IO, ERR_NOT_FOUND,
    ERR_PERSIST_FAILED, ERR_TOO_LARGE, ERR_UNSAFE_DIRECTORY,
};
#[cfg(any(test, feature = "fault-injection"))]
pub use fs::{FaultKind, FaultPlan};
pub use incident_log::{
    Clock, IncidentLog, IncidentLogOptions, IncidentRecord, RateLimit, ReadFilter, ReadResult, RecordOutcome,
};
pub use journal::{ActiveOperation, Journal, JournalOptions};
pub use log::{Pending, Reply};
