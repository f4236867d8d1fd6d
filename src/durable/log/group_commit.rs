//! Group commit on a writer thread of its own: callers queue records and get a [`Pending`]
//! acknowledgement; the writer takes everything queued, writes it with one write and one
//! fdatasync ([`LogWriter::commit`]), and only then acknowledges each record. Records
//! queued while one commit runs all go into the next, so one fdatasync covers every
//! record that arrived during the previous one.
//!
//! No caller blocks a thread to wait: an async caller awaits the [`Pending`] (the binding
//! resolves its promise from there), a synchronous one calls [`Pending::wait`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

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
}

type Reply<A> = oneshot::Sender<Result<A>>;

impl<W: LogWriter + ?Sized> Inbox<W> {
    /// Queues `entry`; the returned acknowledgement settles once it is durable (or failed).
    pub(crate) fn push(&mut self, entry: W::Entry) -> Pending<W::Ack> {
        let (reply, receiver) = oneshot::channel();
        self.entries.push(entry);
        self.replies.push(Some(reply));
        Pending { receiver }
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
                        let _ = reply.send(Err(error));
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

    /// Blocks this thread until the record is durable (or failed).
    pub fn wait(self) -> Result<A> {
        futures::executor::block_on(self)
    }
}

impl<A> Future for Pending<A> {
    type Output = Result<A>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<A>> {
        Pin::new(&mut self.receiver).poll(cx).map(|answer| answer.unwrap_or_else(|_| Err(writer_gone())))
    }
}

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
            inbox: Mutex::new(Inbox { admission, entries: Vec::new(), replies: Vec::new(), closing: false }),
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

    /// Runs `f` on the inbox (to check and queue records), then wakes the writer.
    pub(crate) fn queue<R>(&self, f: impl FnOnce(&mut Inbox<W>) -> R) -> R {
        let mut inbox = lock(&self.shared.inbox);
        let result = f(&mut inbox);
        if !inbox.entries.is_empty() {
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
    loop {
        let (entries, replies) = {
            let mut inbox = lock(&shared.inbox);
            while inbox.entries.is_empty() {
                if inbox.closing {
                    return;
                }
                inbox = shared.work.wait(inbox).unwrap_or_else(|p| p.into_inner());
            }
            let n = shared.writer.batch_len(&inbox.entries).clamp(1, inbox.entries.len());
            let entries: Vec<W::Entry> = inbox.entries.drain(..n).collect();
            let replies: Vec<Option<Reply<W::Ack>>> = inbox.replies.drain(..n).collect();
            (entries, replies)
        };
        // A panic in a commit fails its batch, not every later caller.
        let count = entries.len();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.writer.commit(entries)))
            .unwrap_or_else(|_| {
                Err(DurableError::new(ERR_INTERNAL, "internal error in hpc-health: a log commit panicked"))
            });
        match result {
            Ok(acks) => {
                debug_assert_eq!(acks.len(), count);
                for (reply, ack) in replies.into_iter().zip(acks) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(ack));
                    }
                }
            }
            Err(error) => {
                shared.writer.after_failure(&mut lock(&shared.inbox));
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
