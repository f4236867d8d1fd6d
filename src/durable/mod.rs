//! Durable state: one persistence module owns every file protocol; checkpoints, the operation journal and the incident log build on it.
//!
//! - [`persist`]: durable whole-file writes (temp, fsync, rename, directory fsync; rewrite
//!   once on failure), durable appends, bounded reads, safe locked state directories, the
//!   error type and codes, and the [`Storage`] I/O layer with fault injection for tests.
//! - `dir`: a directory used only through the handle opened and checked once (`openat`,
//!   `renameat`, `unlinkat`, `fdopendir`); never follows a symlink or opens what is not a
//!   regular file.
//! - [`checkpoint`]: checksummed checkpoint generations; the newest valid one wins.
//! - [`journal`]: begun-and-not-ended operations, group-committed, replayed on open.
//! - [`incident_log`]: JSON Lines incidents in segments, group-committed, rate limited;
//!   the durable [`crate::incident::IncidentSink`].
//! - [`defaults`]: every policy number.
//!
//! Plain Rust: nothing here knows of JavaScript.

pub mod checkpoint;
pub mod defaults;
pub(crate) mod dir;
pub mod incident_log;
pub mod journal;
pub mod persist;

pub use checkpoint::{Checkpoint, CheckpointMeta, CheckpointStore, LatestValid, SkippedFile};
pub use incident_log::{
    Clock, IncidentLog, IncidentLogOptions, IncidentRecord, RateLimit, ReadFilter, ReadResult, RecordOutcome,
};
pub use journal::{ActiveOperation, Journal, JournalOptions};
pub use persist::{
    open_state_dir, DurableError, FaultKind, FaultPlan, IoOp, ProblemKind, RecoveryProblem, Result, StateDir, Storage,
    ERR_CHECKPOINT_LOCKED, ERR_CORRUPT, ERR_DUPLICATE, ERR_INCIDENT_LOG_LOCKED, ERR_INVALID_ARGUMENT, ERR_INVALID_ID,
    ERR_INVALID_JSON, ERR_INVALID_RETAIN, ERR_IO, ERR_NOT_FOUND, ERR_PERSIST_FAILED, ERR_TOO_LARGE,
    ERR_UNSAFE_DIRECTORY,
};
