//! The kinds of I/O step that go through `Storage`, counted and, in tests, faulted by kind.

/// The kinds of I/O step that go through `Storage`, for counting and fault injection.
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

pub(super) const IO_OPS: [IoOp; 6] =
    [IoOp::Create, IoOp::Write, IoOp::Sync, IoOp::Rename, IoOp::SyncDir, IoOp::Truncate];

impl IoOp {
    pub(super) fn index(self) -> usize {
        self as usize
    }
}
