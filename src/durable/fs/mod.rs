//! The file protocols of durable state, one concern a file: [`error`] (the error type and
//! codes), [`storage`] (every I/O step, of the kinds in [`io_op`]; fault injection in [`fault`],
//! tests only),
//! [`state_dir`] (safe, locked directories), [`read`] (bounded reads), [`whole_file`]
//! (durable whole-file writes), [`append`] (durable appends), [`aside`] (family file
//! names, setting damaged or foreign files aside) and [`json`] (JSON limits). Everything
//! else in `durable` reaches the disk through [`Storage`].
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

pub(crate) mod append;
pub(crate) mod aside;
pub mod error;
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;
pub(crate) mod io_op;
pub mod json;
pub(crate) mod read;
pub mod state_dir;
pub mod storage;
#[cfg(test)]
pub(crate) mod test_support;
pub(crate) mod whole_file;

pub(crate) use append::AppendFile;
pub(crate) use aside::{
    classify, parse_aside_name, parse_padded_seq, set_aside, set_aside_foreign, set_aside_foreign_file, ForeignFile,
    SEQ_DIGITS,
};
pub use error::*;
#[cfg(any(test, feature = "fault-injection"))]
pub use fault::{FaultKind, FaultPlan};
pub(crate) use json::parse_json;
pub use json::{json_nesting_exceeds, validate_json};
pub use state_dir::{open_state_dir, open_state_dir_read_only, StateDir, LOCK_FILE_NAME};
pub use storage::{IoOp, Storage};
pub use whole_file::TEMP_PREFIX;
pub(crate) use whole_file::{remove_files, remove_temp_files, write_file_durable, write_file_rewrite};
