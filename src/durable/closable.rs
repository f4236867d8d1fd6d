//! A store that is open until `close` releases its directory for another process. Work
//! holds the store for its whole length, so `close` waits for work in flight; work that
//! comes after fails with `ERR_CLOSED`.

use std::sync::RwLock;

use super::{DurableError, Result};

/// The code of work asked of a closed store.
pub const ERR_CLOSED: &str = "ERR_CLOSED";

pub struct Closable<T> {
    open: RwLock<Option<T>>,
    /// What users call the store in messages, e.g. "the incident log".
    name: &'static str,
}

impl<T> Closable<T> {
    pub fn new(name: &'static str, store: T) -> Self {
        Closable { open: RwLock::new(Some(store)), name }
    }

    /// Runs `work` with the store held open; `ERR_CLOSED` once closed.
    pub fn with<R>(&self, work: impl FnOnce(&T) -> Result<R>) -> Result<R> {
        let guard = crate::sync::read(&self.open);
        match guard.as_ref() {
            Some(store) => work(store),
            None => Err(DurableError::new(ERR_CLOSED, format!("{} is closed", self.name))),
        }
    }

    /// As `with`, without waiting: for the JS thread, which must never block. Once `close`
    /// waits for work in flight, the store counts as closed.
    pub fn try_with<R>(&self, work: impl FnOnce(&T) -> Result<R>) -> Result<R> {
        let guard = match self.open.try_read() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        match guard.as_ref().and_then(|g| g.as_ref()) {
            Some(store) => work(store),
            None => Err(DurableError::new(ERR_CLOSED, format!("{} is closed", self.name))),
        }
    }

    /// Waits for work in flight, then drops the store (which releases its directory lock).
    /// Idempotent.
    pub fn close(&self) {
        *crate::sync::write(&self.open) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_after_close_fails_with_err_closed_and_close_is_idempotent() {
        let store = Closable::new("the test store", 7);
        assert_eq!(store.with(|n| Ok(*n + 1)).unwrap(), 8);
        store.close();
        store.close();
        let e = store.with(|n| Ok(*n)).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (ERR_CLOSED, "the test store is closed"));
        assert_eq!(store.try_with(|n| Ok(*n)).unwrap_err().code, ERR_CLOSED);
    }

    #[test]
    fn try_with_answers_closed_at_once_while_a_close_waits_for_work_in_flight() {
        let store = Closable::new("the test store", 7);
        assert_eq!(store.try_with(|n| Ok(*n + 1)).unwrap(), 8);
        std::thread::scope(|scope| {
            store
                .with(|_| {
                    let closing = scope.spawn(|| store.close());
                    // Until the close is waiting, try_with still finds the store open; once
                    // it waits, try_with answers closed without waiting for it.
                    let started = std::time::Instant::now();
                    while store.try_with(|_| Ok(())).is_ok() {
                        assert!(started.elapsed() < std::time::Duration::from_secs(10), "try_with never saw the close");
                        std::thread::yield_now();
                    }
                    assert!(!closing.is_finished(), "the close did not wait for the work in flight");
                    Ok(())
                })
                .unwrap();
        });
        assert_eq!(store.try_with(|n| Ok(*n)).unwrap_err().code, ERR_CLOSED);
    }
}
