//! Locking shared state the one way this crate does.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, carrying on after a panic elsewhere: the state guarded in this crate is
/// updated in single steps, so it is consistent whenever the lock is free.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
