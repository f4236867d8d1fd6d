//! Settling the promises of journal records in batches. The journal's writer thread
//! acknowledges a whole batch after one fdatasync; each outcome is put here and the JS
//! thread is woken once (one thread-safe call) to settle every promise that is ready,
//! instead of a thread-safe function, a runtime task and a wake-up per record.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use napi::bindgen_prelude::*;
use napi::{sys, Env, JsError};

use super::task::coded_error;
use crate::sync::lock;

type Failure = (&'static str, String);

/// A promise's deferred handle; settled only on the JS thread.
struct Deferred(sys::napi_deferred);
// SAFETY: the handle is only carried by other threads; it is used (settled) only in
// `settle_ready`, which runs on the JS thread.
unsafe impl Send for Deferred {}

#[derive(Clone, Copy)]
struct Tsfn(sys::napi_threadsafe_function);
// SAFETY: a thread-safe function handle is made to be called from any thread; ref/unref
// are done on the JS thread only.
unsafe impl Send for Tsfn {}
unsafe impl Sync for Tsfn {}

/// What the thread-safe function's callback reaches through its context pointer.
struct Shared {
    /// Outcomes ready to settle on the JS thread. Its lock is also held around every use
    /// of the thread-safe function from another thread, so that `finalize` (which takes
    /// it) cannot let the function be destroyed during one.
    ready: Mutex<Ready>,
    /// Promises made and not yet settled. Changed on the JS thread only; while it is not
    /// zero the thread-safe function keeps the event loop alive.
    unsettled: AtomicUsize,
    tsfn: OnceLock<Tsfn>,
}

struct Ready {
    outcomes: Vec<(Deferred, std::result::Result<(), Failure>)>,
    /// The thread-safe function is gone (the environment is being torn down): never use
    /// its handle again.
    closed: bool,
}

/// Makes promises on the JS thread that any thread can settle.
pub struct PromiseBatch {
    shared: Arc<Shared>,
    tsfn: Tsfn,
}

impl PromiseBatch {
    /// On the JS thread.
    pub fn new(env: &Env) -> Result<Arc<PromiseBatch>> {
        let shared = Arc::new(Shared {
            ready: Mutex::new(Ready { outcomes: Vec::new(), closed: false }),
            unsettled: AtomicUsize::new(0),
            tsfn: OnceLock::new(),
        });
        let context = Arc::into_raw(shared.clone()) as *mut c_void;
        let name = env.create_string("hpc-health journal acknowledgements")?;
        let mut tsfn = ptr::null_mut();
        // SAFETY: called on the JS thread with this env; no JS function (the callback is
        // `settle_ready`); `context` is an Arc reference released by `finalize`, which
        // gets it as its finalize data.
        let status = unsafe {
            sys::napi_create_threadsafe_function(
                env.raw(),
                ptr::null_mut(),
                ptr::null_mut(),
                name.raw(),
                0,
                1,
                context,
                Some(finalize),
                context,
                Some(settle_ready),
                &mut tsfn,
            )
        };
        if status != sys::Status::napi_ok {
            // SAFETY: not handed to a thread-safe function: released here, once.
            drop(unsafe { Arc::from_raw(context as *const Shared) });
            return Err(Error::new(Status::GenericFailure, "could not create the journal's acknowledgement channel"));
        }
        // SAFETY: on the JS thread, a live handle. Nothing pending: do not keep the
        // process alive until a promise is made.
        unsafe { sys::napi_unref_threadsafe_function(env.raw(), tsfn) };
        let _ = shared.tsfn.set(Tsfn(tsfn));
        Ok(Arc::new(PromiseBatch { shared, tsfn: Tsfn(tsfn) }))
    }

    /// On the JS thread: a new promise, and what settles it from any thread.
    pub fn promise<'env>(self: &Arc<Self>, env: &'env Env) -> Result<(PromiseRaw<'env, ()>, Settle)> {
        let mut deferred = ptr::null_mut();
        let mut promise = ptr::null_mut();
        // SAFETY: on the JS thread with this env; out-pointers valid.
        let status = unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) };
        if status != sys::Status::napi_ok {
            return Err(Error::new(Status::GenericFailure, "could not create a promise"));
        }
        if self.shared.unsettled.fetch_add(1, Ordering::SeqCst) == 0 {
            // SAFETY: on the JS thread, a live handle (released only when this drops).
            unsafe { sys::napi_ref_threadsafe_function(env.raw(), self.tsfn.0) };
        }
        Ok((PromiseRaw::new(env.raw(), promise), Settle { batch: self.clone(), deferred: Some(Deferred(deferred)) }))
    }
}

impl Drop for PromiseBatch {
    fn drop(&mut self) {
        let ready = lock(&self.shared.ready);
        if !ready.closed {
            // SAFETY: the handle is live (not finalized: checked under the lock that
            // `finalize` takes); released once. Calls already queued still run.
            unsafe { sys::napi_release_threadsafe_function(self.tsfn.0, sys::ThreadsafeFunctionReleaseMode::release) };
        }
    }
}

/// Settles one promise, from any thread. Dropped unsettled, it rejects (never leaves the
/// promise pending).
pub struct Settle {
    batch: Arc<PromiseBatch>,
    deferred: Option<Deferred>,
}

impl Settle {
    pub fn settle(mut self, outcome: std::result::Result<(), Failure>) {
        self.put(outcome);
    }

    fn put(&mut self, outcome: std::result::Result<(), Failure>) {
        let Some(deferred) = self.deferred.take() else { return };
        let mut ready = lock(&self.batch.shared.ready);
        if ready.closed {
            return; // the environment is gone: no promise left to settle
        }
        ready.outcomes.push((deferred, outcome));
        if ready.outcomes.len() == 1 {
            // SAFETY: a live handle: not finalized (checked under the lock `finalize`
            // takes, held until the call returns). If the environment is closing the call
            // is refused and nothing is left to settle.
            unsafe {
                sys::napi_call_threadsafe_function(
                    self.batch.tsfn.0,
                    ptr::null_mut(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                )
            };
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        self.put(Err(("ERR_INTERNAL", "internal error in hpc-health: a journal record was never acknowledged".into())));
    }
}

/// The thread-safe function's callback, on the JS thread: settles every ready promise.
unsafe extern "C" fn settle_ready(env: sys::napi_env, _js: sys::napi_value, context: *mut c_void, _: *mut c_void) {
    // SAFETY: `context` is the Arc<Shared> this function was created with, released only
    // in `finalize`, after the last call.
    let shared = unsafe { &*(context as *const Shared) };
    let batch = std::mem::take(&mut lock(&shared.ready).outcomes);
    if env.is_null() || batch.is_empty() {
        return; // the environment is going away: nothing left to settle into
    }
    let count = batch.len();
    let js_env = Env::from_raw(env);
    for (deferred, outcome) in batch {
        // SAFETY: on the JS thread with its env; each deferred is settled exactly once.
        unsafe {
            match outcome {
                Ok(()) => {
                    let mut undefined = ptr::null_mut();
                    sys::napi_get_undefined(env, &mut undefined);
                    sys::napi_resolve_deferred(env, deferred.0, undefined);
                }
                Err((code, message)) => {
                    let error = JsError::from(coded_error(&js_env, code, &message)).into_value(env);
                    sys::napi_reject_deferred(env, deferred.0, error);
                }
            }
        }
    }
    if shared.unsettled.fetch_sub(count, Ordering::SeqCst) == count {
        if let Some(tsfn) = shared.tsfn.get() {
            // SAFETY: on the JS thread, a live handle (this call is one of its calls).
            unsafe { sys::napi_unref_threadsafe_function(env, tsfn.0) };
        }
    }
}

/// The thread-safe function is being destroyed: marks it closed and releases the
/// context's Arc.
unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the Arc reference made in `PromiseBatch::new`, released here once.
    let shared = unsafe { Arc::from_raw(data as *const Shared) };
    let mut ready = lock(&shared.ready);
    ready.closed = true;
    ready.outcomes.clear();
}
