//! Awaiting a JavaScript promise from Rust.
//!
//! napi's `Promise<T>` creates two native callbacks per promise and frees their data only in
//! GC finalizers; measured on Node 20, every awaited hook promise left ~0.35 KiB of native
//! memory behind (linear over 90,000 calls), which an overnight service with async hooks and
//! a `captureState` per checkpoint cannot afford. Here each environment gets one native
//! `settle` function, made once; a promise is given `settle.bind(undefined, id, true)` and
//! `settle.bind(undefined, id, false)`, plain JavaScript functions the GC takes like any
//! other, and a table entry that `settle` (or dropping the wait) removes.

use futures::channel::oneshot;
use napi::bindgen_prelude::{FromNapiValue, Unknown};
use napi::sys;

use super::args::describe;
use super::engine::{call, message_of, take_exception};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

/// Runs on the JS thread when the promise settles: `true` and the value, or `false` and
/// the rejection reason.
type Settler = Box<dyn FnOnce(sys::napi_env, bool, sys::napi_value) + Send>;

static PENDING: Mutex<BTreeMap<u64, Settler>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The `settle` function of each environment living on this thread.
    static SETTLE_FUNCTIONS: RefCell<Vec<(usize, sys::napi_ref)>> = const { RefCell::new(Vec::new()) };
}

fn pending() -> MutexGuard<'static, BTreeMap<u64, Settler>> {
    crate::sync::lock(&PENDING)
}

/// A promise being waited for: resolves to its converted value, or the rejection's message.
pub struct Settlement<T> {
    id: u64,
    receiver: oneshot::Receiver<Result<T, String>>,
}

impl<T> Future for Settlement<T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver).poll(cx).map(|settled| {
            settled.unwrap_or_else(|_| Err("the promise can no longer settle (its environment is gone)".to_owned()))
        })
    }
}

impl<T> Drop for Settlement<T> {
    /// A wait given up (a step timeout) takes its entry with it; a late settle finds none.
    fn drop(&mut self) {
        pending().remove(&self.id);
    }
}

/// Waits for `promise` (a native Promise of `env`; call on its JS thread). `convert` turns
/// the fulfilled value into `T` on the JS thread.
///
/// # Safety
/// `env` and `promise` must be valid handles of the current JS thread's scope.
pub unsafe fn settle_later<T: Send + 'static>(
    env: sys::napi_env,
    promise: sys::napi_value,
    convert: impl FnOnce(sys::napi_env, sys::napi_value) -> Result<T, String> + Send + 'static,
) -> napi::Result<Settlement<T>> {
    let (sender, receiver) = oneshot::channel();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let settler: Settler = Box::new(move |env, fulfilled, value| {
        // SAFETY: the settler runs in `settle`, on the JS thread, with the live environment and value the engine
        // passed.
        let result = if fulfilled { convert(env, value) } else { Err(unsafe { rejection_message(env, value) }) };
        let _ = sender.send(result);
    });
    pending().insert(id, settler);
    // From here on, an early return drops the settlement and with it the entry.
    let settlement = Settlement { id, receiver };
    // SAFETY: `env` and `promise` are valid in the current scope (this function's contract); every handle made here is
    // used in the same scope.
    unsafe {
        let settle = settle_function(env)?;
        let mut id_value = ptr::null_mut();
        napi::check_status!(sys::napi_create_double(env, id as f64, &mut id_value))?;
        let on_fulfilled = bind(env, settle, id_value, true)?;
        let on_rejected = bind(env, settle, id_value, false)?;
        // A promise whose own `then` was replaced may throw from it: that fails this wait.
        let failed = |message| napi::Error::new(napi::Status::GenericFailure, message);
        let then =
            named_property(env, promise, c"then").map_err(|e| failed(take_exception(env).unwrap_or(e.reason)))?;
        call(env, Some(promise), then, &[on_fulfilled, on_rejected]).map_err(failed)?;
    }
    Ok(settlement)
}

/// The message of a rejection reason, read without running its getters or `toString`;
/// a reason without one is named by its type (`rejected with undefined`).
///
/// # Safety
/// `env` and the handles given must be valid in the current JS thread's scope.
unsafe fn rejection_message(env: sys::napi_env, reason: sys::napi_value) -> String {
    // SAFETY: `env` and `reason` are valid in the current scope (this function's contract).
    match unsafe { Unknown::from_napi_value(env, reason) } {
        Ok(value) => message_of(&value).unwrap_or_else(|| format!("rejected with {}", describe(&value))),
        Err(error) => error.reason,
    }
}

/// # Safety
/// `env` and the handles given must be valid in the current JS thread's scope.
unsafe fn named_property(
    env: sys::napi_env,
    object: sys::napi_value,
    name: &std::ffi::CStr,
) -> napi::Result<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: `env` and `object` are valid (the caller's contract); `name` is NUL-terminated; the out pointer is a
    // local.
    napi::check_status!(unsafe { sys::napi_get_named_property(env, object, name.as_ptr(), &mut value) })?;
    Ok(value)
}

/// `settle.bind(undefined, id, fulfilled)`
///
/// # Safety
/// `env` and the handles given must be valid in the current JS thread's scope.
unsafe fn bind(
    env: sys::napi_env,
    settle: sys::napi_value,
    id: sys::napi_value,
    fulfilled: bool,
) -> napi::Result<sys::napi_value> {
    // SAFETY: the handles are valid in the current scope (the caller's contract); out pointers are locals and the
    // argument array outlives the call.
    unsafe {
        let bind = named_property(env, settle, c"bind")?;
        let (mut this, mut flag, mut bound) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        napi::check_status!(sys::napi_get_undefined(env, &mut this))?;
        napi::check_status!(sys::napi_get_boolean(env, fulfilled, &mut flag))?;
        napi::check_status!(sys::napi_call_function(env, settle, bind, 3, [this, id, flag].as_ptr(), &mut bound))?;
        Ok(bound)
    }
}

/// This environment's `settle` function, made on first use and kept for its lifetime.
///
/// # Safety
/// `env` and the handles given must be valid in the current JS thread's scope.
unsafe fn settle_function(env: sys::napi_env) -> napi::Result<sys::napi_value> {
    let known = SETTLE_FUNCTIONS.with_borrow(|list| list.iter().find(|(e, _)| *e == env as usize).map(|(_, r)| *r));
    let reference = match known {
        Some(reference) => reference,
        // SAFETY: `env` is the current JS thread's environment (the caller's contract); `settle` has napi's callback
        // signature; the reference keeps the function for the environment's lifetime, and the cleanup hook forgets it
        // when that ends.
        None => unsafe {
            let mut function = ptr::null_mut();
            napi::check_status!(sys::napi_create_function(
                env,
                c"settle".as_ptr(),
                6,
                Some(settle),
                ptr::null_mut(),
                &mut function
            ))?;
            let mut reference = ptr::null_mut();
            napi::check_status!(sys::napi_create_reference(env, function, 1, &mut reference))?;
            // A later environment may reuse this address: forget the entry when this one ends.
            napi::check_status!(sys::napi_add_env_cleanup_hook(env, Some(forget_environment), env.cast()))?;
            SETTLE_FUNCTIONS.with_borrow_mut(|list| list.push((env as usize, reference)));
            reference
        },
    };
    let mut function = ptr::null_mut();
    // SAFETY: `reference` was made in this environment, which still lives (it is forgotten when the environment ends).
    napi::check_status!(unsafe { sys::napi_get_reference_value(env, reference, &mut function) })?;
    Ok(function)
}

unsafe extern "C" fn forget_environment(env: *mut std::ffi::c_void) {
    SETTLE_FUNCTIONS.with_borrow_mut(|list| list.retain(|(e, _)| *e != env as usize));
}

/// `settle(id, fulfilled, value)`: hands the value to the waiting settlement, if any
/// (`napi_get_cb_info` fills missing arguments with `undefined`).
unsafe extern "C" fn settle(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut argc = 3;
    let mut argv = [ptr::null_mut(); 3];
    let mut id = 0f64;
    let mut fulfilled = false;
    // SAFETY: the engine calls this function on the JS thread with a live `env` and `info`; `argv` has room for the
    // three arguments asked for.
    unsafe {
        if sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), ptr::null_mut())
            != sys::Status::napi_ok
            || sys::napi_get_value_double(env, argv[0], &mut id) != sys::Status::napi_ok
            || sys::napi_get_value_bool(env, argv[1], &mut fulfilled) != sys::Status::napi_ok
        {
            return ptr::null_mut();
        }
    }
    // Taken out before it runs: the settler may run JavaScript (JSON conversion).
    let settler = pending().remove(&(id as u64));
    if let Some(settler) = settler {
        // A panic must not unwind out of this callback: the wait then fails as abandoned.
        let _ = super::task::catch_panic(|| settler(env, fulfilled, argv[2]));
    }
    // Nothing a conversion raised may escape into the promise chain as an unhandled rejection.
    // SAFETY: on the JS thread, with this callback's environment.
    let _ = unsafe { take_exception(env) };
    ptr::null_mut()
}
