//! The segmented-log engine the operation journal and the incident log share: numbered
//! files in a locked state directory ([`LogFiles`]: new files written whole, appends
//! fdatasynced, a failed append rewritten into a new file once, old files removed) and
//! group commit on a writer thread ([`GroupCommit`]). Each log keeps only its codec, its
//! rotation and retention rule, and its replay rules.

mod files;
mod group_commit;

pub(crate) use files::{Appended, LogFiles, NewFile};
pub(crate) use group_commit::{GroupCommit, Inbox, LogWriter};
pub use group_commit::{Pending, Reply};
