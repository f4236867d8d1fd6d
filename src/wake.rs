//! Waking the supervisor between its checks. Any event source (the Xid watch, the fast
//! samples, kernel memory-pressure events) holds a `WakeHandle` and calls `wake`
//! when it sees something; the loop selects on the `Wake` beside its interval timer and
//! checks at once. Wakes coalesce: many before the loop gets to them make one check.

use std::sync::{Arc, Weak};
use tokio::sync::Notify;

/// What woke the supervisor, for nobody but the logs and tests: every wake means "check now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeSource {
    Xid,
    FastSample,
    MemoryPressure,
}

/// The loop's end: owned by the supervisor.
#[derive(Debug, Default)]
pub struct Wake {
    notify: Arc<Notify>,
}

/// An event source's end. It does not keep the supervisor's `Wake` alive: a source that
/// outlives the supervisor (the Xid watch is shared per NVML session) wakes nobody.
#[derive(Debug, Clone)]
pub struct WakeHandle {
    notify: Weak<Notify>,
}

impl Wake {
    pub fn handle(&self) -> WakeHandle {
        WakeHandle { notify: Arc::downgrade(&self.notify) }
    }

    /// Resolves at the next wake, or at once if one came since the last `woken`.
    pub async fn woken(&self) {
        self.notify.notified().await
    }
}

impl WakeHandle {
    /// Asks for a check now. Cheap and never blocks; callable from any thread.
    /// Returns false once the supervisor is gone (the source may then drop the handle).
    pub fn wake(&self, _source: WakeSource) -> bool {
        match self.notify.upgrade() {
            Some(notify) => {
                // A stored permit: a wake while the loop is busy is not lost.
                notify.notify_one();
                true
            }
            None => false,
        }
    }

    pub fn is_alive(&self) -> bool {
        self.notify.strong_count() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_coalesce_and_are_not_lost() {
        let wake = Wake::default();
        let handle = wake.handle();
        // Woken before anyone waits: the next wait returns at once.
        assert!(handle.wake(WakeSource::Xid));
        assert!(handle.wake(WakeSource::FastSample));
        tokio::time::timeout(Duration::from_secs(5), wake.woken()).await.expect("the stored wake");
        // Many wakes made one: the next wait waits.
        assert!(tokio::time::timeout(Duration::from_millis(50), wake.woken()).await.is_err());
        let other = handle.clone();
        let waker = std::thread::spawn(move || other.wake(WakeSource::MemoryPressure));
        tokio::time::timeout(Duration::from_secs(5), wake.woken()).await.expect("a wake from another thread");
        assert!(waker.join().unwrap());
        drop(wake);
        assert!(!handle.is_alive());
        assert!(!handle.wake(WakeSource::Xid), "nobody to wake");
    }
}
