//! Fault injection for tests: which I/O steps of a [`Storage`](super::Storage) fail, and
//! how. Compiled only for this crate's tests and under the `fault-injection` feature, so
//! production I/O never consults a plan.

use std::io;
use std::time::Duration;

use super::io_op::{IoOp, IO_OPS};

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
/// from the moment the plan is installed on a [`Storage`](super::Storage).
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

/// A plan installed on a storage, with the steps seen since.
pub(super) struct ArmedPlan {
    plan: FaultPlan,
    seen: [u64; IO_OPS.len()],
}

impl ArmedPlan {
    pub(super) fn new(plan: FaultPlan) -> Self {
        ArmedPlan { plan, seen: [0; IO_OPS.len()] }
    }

    /// Counts step `op`; returns the fault to inject there and the delay to apply.
    pub(super) fn step(&mut self, op: IoOp) -> (Option<FaultKind>, Option<Duration>) {
        self.seen[op.index()] += 1;
        let nth = self.seen[op.index()];
        let fault = self.plan.faults.iter().find(|(o, n, _)| *o == op && *n == nth).map(|f| f.2);
        let delay = self.plan.delays.iter().find(|(o, _)| *o == op).map(|d| d.1);
        (fault, delay)
    }
}

/// The error an injected fault returns.
pub(super) fn injected(op: IoOp, kind: FaultKind) -> io::Error {
    let errno = match kind {
        FaultKind::Eio => libc::EIO,
        FaultKind::NoSpace => libc::ENOSPC,
    };
    let err = io::Error::from_raw_os_error(errno);
    io::Error::new(err.kind(), format!("{err} (injected at {op:?})"))
}

impl FaultKind {
    /// Whether a failing write first writes half its bytes (a disk that fills up).
    pub(super) fn writes_half(self) -> bool {
        self == FaultKind::NoSpace
    }
}
