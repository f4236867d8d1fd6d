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
        let guard = self.open.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(store) => work(store),
            None => Err(DurableError::new(ERR_CLOSED, format!("{} is closed", self.name))),
        }
    }

    /// Waits for work in flight, then drops the store (which releases its directory lock).
    /// Idempotent.
    pub fn close(&self) {
        *self.open.write().unwrap_or_else(|p| p.into_inner()) = None;
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
    }
}
