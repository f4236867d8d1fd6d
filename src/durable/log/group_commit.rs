//! Group commit on a writer thread of its own: callers queue records; the writer takes
//! everything queued, writes it with one write and one fdatasync ([`LogWriter::commit`]),
//! and only then acknowledges each record. Records queued while one commit runs all go
//! into the next, so one fdatasync covers every record that arrived during the previous
//! one; after a commit the writer also waits (briefly) for the callers it just answered
//! to queue their next records, rather than commit the first alone ([`commit_now`]).
//!
//! No caller blocks a thread to wait: an async caller awaits a [`Pending`] or hands a
//! [`Reply`] that the writer calls (the binding settles its promises from there); a
//! synchronous one calls [`Pending::wait`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use crate::durable::fs::{DurableError, Result};
use crate::sync::lock;

/// What a log does with a batch; its codec and state live behind this.
pub(crate) trait LogWriter: Send + Sync + 'static {
    /// One queued record, encoded.
    type Entry: Send + 'static;
    /// What its caller gets once it is durable.
    type Ack: Send + 'static;
    /// What callers check and update when queueing (under the queue's lock), e.g. the
    /// operations active once everything queued is committed.
    type Admission: Send + 'static;

    /// How many of the queued entries (at least 1) the next commit takes.
    fn batch_len(&self, queued: &[Self::Entry]) -> usize {
        queued.len()
    }

    /// Writes `batch` durably (one write, one fdatasync); one ack per entry, in order, or
    /// the one error all of them failed with.
    fn commit(&self, batch: Vec<Self::Entry>) -> Result<Vec<Self::Ack>>;

    /// After a failed commit, with the queue locked: re-check what is still queued against
    /// what is now durable ([`Inbox::reject_queued`]).
    fn after_failure(&self, _inbox: &mut Inbox<Self>) {}
}

/// The queue and what callers check when queueing.
pub(crate) struct Inbox<W: LogWriter + ?Sized> {
    pub(crate) admission: W::Admission,
    /// Queued entries, oldest first, and beside each who waits for it (`None`: no one).
    entries: Vec<W::Entry>,
    replies: Vec<Option<Reply<W::Ack>>>,
    closing: bool,
    /// The writer is waiting for records (only then does queueing wake it).
    writer_waiting: bool,
    /// How many records the writer gathers before it commits, unless it has waited as
    /// long as one commit takes: as many as the last commit took, since callers that were
    /// waiting for those tend to queue their next ones right away. A commit started on
    /// the first of them would take one record and leave the rest for the next fdatasync
    /// (measured: about 8 records per fdatasync at 64 in flight, against 63 this way).
    gather: usize,
}

/// Where a record's outcome goes, called on the writer thread once it is known.
pub type Reply<A> = Box<dyn FnOnce(Result<A>) + Send>;

impl<W: LogWriter + ?Sized> Inbox<W> {
    /// Queues `entry`; the returned acknowledgement settles once it is durable (or failed).
    pub(crate) fn push(&mut self, entry: W::Entry) -> Pending<W::Ack> {
        let (sender, receiver) = oneshot::channel();
        self.push_then(
            entry,
            Box::new(move |outcome| {
                let _ = sender.send(outcome);
            }),
        );
        Pending { receiver }
    }

    /// Queues `entry`; `reply` gets its outcome on the writer thread (keep it short: the
    /// next commit waits for it).
    pub(crate) fn push_then(&mut self, entry: W::Entry, reply: Reply<W::Ack>) {
        self.entries.push(entry);
        self.replies.push(Some(reply));
    }

    /// Queues `entry` with no one waiting for it.
    pub(crate) fn push_unawaited(&mut self, entry: W::Entry) {
        self.entries.push(entry);
        self.replies.push(None);
    }

    /// Fails, with the error `check` returns for it, each queued entry it returns one for;
    /// the rest stay queued in order.
    pub(crate) fn reject_queued(&mut self, mut check: impl FnMut(&W::Entry) -> Option<DurableError>) {
        let entries = std::mem::take(&mut self.entries);
        let replies = std::mem::take(&mut self.replies);
        for (entry, reply) in entries.into_iter().zip(replies) {
            match check(&entry) {
                None => {
                    self.entries.push(entry);
                    self.replies.push(reply);
                }
                Some(error) => {
                    if let Some(reply) = reply {
                        reply(Err(error));
                    }
                }
            }
        }
    }
}

/// An acknowledgement to come: a future, or [`wait`](Pending::wait) for it.
#[must_use = "a record is acknowledged only once its Pending settles"]
pub struct Pending<A> {
    receiver: oneshot::Receiver<Result<A>>,
}

impl<A> Pending<A> {
    /// One settled already, with `outcome`.
    pub fn settled(outcome: Result<A>) -> Self {
        let (reply, receiver) = oneshot::channel();
        let _ = reply.send(outcome);
        Pending { receiver }
    }

    /// Blocks this thread until the record is durable (or failed). Parks the thread
    /// itself rather than running an executor, so it may be called from inside one.
    pub fn wait(mut self) -> Result<A> {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(outcome) = Pin::new(&mut self).poll(&mut cx) {
                return outcome;
            }
            std::thread::park();
        }
    }
}

impl<A> Future for Pending<A> {
    type Output = Result<A>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<A>> {
        Pin::new(&mut self.receiver).poll(cx).map(|answer| answer.unwrap_or_else(|_| Err(writer_gone())))
    }
}

/// Whether the writer commits the `queued` records now: enough have gathered, or the
/// first has waited as long as the last commit took (it would have waited that long
/// behind a commit in progress anyway), or the log is closing.
fn commit_now(queued: usize, gather: usize, waited: Duration, last_commit: Duration, closing: bool) -> bool {
    queued > 0 && (closing || queued >= gather || waited >= last_commit)
}

/// The longest a record waits for others to gather, however slow the last commit was.
const MAX_GATHER: Duration = Duration::from_millis(5);

/// A failure inside this package (a bug), not of the disk.
const ERR_INTERNAL: &str = "ERR_INTERNAL";

fn writer_gone() -> DurableError {
    DurableError::new(ERR_INTERNAL, "internal error in hpc-health: the log writer stopped")
}

struct Shared<W: LogWriter> {
    writer: W,
    inbox: Mutex<Inbox<W>>,
    /// Signalled when something is queued, and on close.
    work: Condvar,
}

/// A log's writer thread and queue. Dropping it commits everything queued, acknowledges
/// it, and joins the thread.
pub(crate) struct GroupCommit<W: LogWriter> {
    shared: Arc<Shared<W>>,
    thread: Option<JoinHandle<()>>,
}

impl<W: LogWriter> GroupCommit<W> {
    /// Starts the writer thread (`name` for debuggers).
    pub(crate) fn start(name: &str, writer: W, admission: W::Admission) -> Result<Self> {
        let shared = Arc::new(Shared {
            writer,
            inbox: Mutex::new(Inbox {
                admission,
                entries: Vec::new(),
                replies: Vec::new(),
                closing: false,
                writer_waiting: false,
                gather: 1,
            }),
            work: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn({
                let shared = shared.clone();
                move || run(&shared)
            })
            .map_err(|e| DurableError::io(format!("starting the {name} thread"), &e))?;
        Ok(GroupCommit { shared, thread: Some(thread) })
    }

    pub(crate) fn writer(&self) -> &W {
        &self.shared.writer
    }

    /// Runs `f` on the inbox (to check and queue records), then wakes the writer if it
    /// waits for what is queued now.
    pub(crate) fn queue<R>(&self, f: impl FnOnce(&mut Inbox<W>) -> R) -> R {
        let mut inbox = lock(&self.shared.inbox);
        let was_empty = inbox.entries.is_empty();
        let result = f(&mut inbox);
        // The first records start the writer's wait for the rest (bounded); enough
        // records end it.
        let queued = inbox.entries.len();
        if inbox.writer_waiting && queued > 0 && (was_empty || queued >= inbox.gather) {
            inbox.writer_waiting = false;
            self.shared.work.notify_one();
        }
        result
    }
}

impl<W: LogWriter> Drop for GroupCommit<W> {
    fn drop(&mut self) {
        lock(&self.shared.inbox).closing = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run<W: LogWriter>(shared: &Shared<W>) {
    // How long the last commit took: the longest a record waits for others to gather.
    let mut last_commit = Duration::ZERO;
    loop {
        let (entries, replies) = {
            let mut inbox = lock(&shared.inbox);
            let mut first_seen: Option<Instant> = None;
            loop {
                if inbox.closing && inbox.entries.is_empty() {
                    return;
                }
                let waited = first_seen.get_or_insert_with(Instant::now).elapsed();
                if inbox.entries.is_empty() {
                    first_seen = None;
                } else if commit_now(inbox.entries.len(), inbox.gather, waited, last_commit, inbox.closing) {
                    break;
                }
                inbox.writer_waiting = true;
                inbox = match first_seen {
                    None => shared.work.wait(inbox).unwrap_or_else(|p| p.into_inner()),
                    Some(_) => {
                        let left = last_commit.saturating_sub(waited);
                        shared.work.wait_timeout(inbox, left).unwrap_or_else(|p| p.into_inner()).0
                    }
                };
                inbox.writer_waiting = false;
            }
            let n = shared.writer.batch_len(&inbox.entries).clamp(1, inbox.entries.len());
            inbox.gather = n;
            let entries: Vec<W::Entry> = inbox.entries.drain(..n).collect();
            let replies: Vec<Option<Reply<W::Ack>>> = inbox.replies.drain(..n).collect();
            (entries, replies)
        };
        let started = Instant::now();
        // A panic in a commit fails its batch, not every later caller.
        let count = entries.len();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.writer.commit(entries)))
            .unwrap_or_else(|_| {
                Err(DurableError::new(ERR_INTERNAL, "internal error in hpc-health: a log commit panicked"))
            });
        last_commit = started.elapsed().min(MAX_GATHER);
        match result {
            Ok(acks) => {
                debug_assert_eq!(acks.len(), count);
                for (reply, ack) in replies.into_iter().zip(acks) {
                    if let Some(reply) = reply {
                        reply(Ok(ack));
                    }
                }
            }
            Err(error) => {
                shared.writer.after_failure(&mut lock(&shared.inbox));
                for reply in replies.into_iter().flatten() {
                    reply(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a commit of 64, the first record back waits for the other 63 (up to the
    /// time of one commit) instead of going to disk alone and leaving them for the next
    /// fdatasync; a lone caller (last batch of 1) is never kept waiting.
    #[test]
    fn the_writer_gathers_as_many_records_as_the_last_commit_took() {
        let commit = Duration::from_millis(2);
        let early = Duration::from_micros(100);
        assert!(!commit_now(1, 64, early, commit, false), "the first of 64 waits for the rest");
        assert!(!commit_now(63, 64, early, commit, false));
        assert!(commit_now(64, 64, early, commit, false), "all back: commit");
        assert!(commit_now(3, 64, commit, commit, false), "waited one commit's time: commit what came");
        assert!(commit_now(1, 1, Duration::ZERO, commit, false), "a lone caller goes at once");
        assert!(commit_now(1, 64, Duration::ZERO, commit, true), "closing: commit what is left");
        assert!(!commit_now(0, 1, commit, commit, true), "nothing to commit");
    }
}
