//! Raw calls into the JavaScript engine for the binding's own callbacks: globals such as
//! `JSON.parse`, calls whose exception is taken rather than left pending, and the message of
//! a thrown value read without running user code.

use napi::bindgen_prelude::*;
use napi::sys;
use std::ffi::CStr;
use std::ptr;

use super::args::describe;

/// `globalThis[path[0]][path[1]]…`, e.g. `[c"JSON", c"parse"]`.
///
/// # Safety
/// `env` must be the current JS thread's environment.
pub unsafe fn global(env: sys::napi_env, path: &[&CStr]) -> Result<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: `env` is the current JS thread's environment (this function's contract); the out pointer is a local.
    napi::check_status!(unsafe { sys::napi_get_global(env, &mut value) })?;
    for name in path {
        let mut member = ptr::null_mut();
        // SAFETY: as above; `value` is a handle the engine just returned and `name` is NUL-terminated.
        napi::check_status!(unsafe { sys::napi_get_named_property(env, value, name.as_ptr(), &mut member) })?;
        value = member;
    }
    Ok(value)
}

/// Calls `function` with `this` (`undefined` when `None`); what it threw is taken and becomes
/// the error's message.
///
/// # Safety
/// `env` and the handles must be valid in the current JS thread's scope.
pub unsafe fn call(
    env: sys::napi_env,
    this: Option<sys::napi_value>,
    function: sys::napi_value,
    args: &[sys::napi_value],
) -> std::result::Result<sys::napi_value, String> {
    // SAFETY: `env` and every handle are valid in the current scope (this function's contract); out pointers are locals
    // that outlive the calls.
    unsafe {
        let this = match this {
            Some(this) => this,
            None => {
                let mut undefined = ptr::null_mut();
                sys::napi_get_undefined(env, &mut undefined);
                undefined
            }
        };
        let mut result = ptr::null_mut();
        match sys::napi_call_function(env, this, function, args.len(), args.as_ptr(), &mut result) {
            sys::Status::napi_ok => Ok(result),
            status => Err(take_exception(env).unwrap_or_else(|| format!("napi status {status}"))),
        }
    }
}

/// The message of a thrown or rejected value, read without running its getters or
/// `toString`; `None` when it has none (`throw undefined`, `reject(42)`).
pub fn message_of(value: &Unknown) -> Option<String> {
    let message = Error::from_unknown_without_coercion(*value).reason.clone();
    (!message.is_empty()).then_some(message)
}

/// Clears the pending exception, if any, and gives its message.
///
/// # Safety
/// `env` must be the current JS thread's environment.
pub unsafe fn take_exception(env: sys::napi_env) -> Option<String> {
    let mut pending = false;
    // SAFETY: `env` is the current JS thread's environment (this function's contract); the out pointer is a local.
    unsafe { sys::napi_is_exception_pending(env, &mut pending) };
    if !pending {
        return None;
    }
    let mut exception = ptr::null_mut();
    // SAFETY: as above.
    unsafe { sys::napi_get_and_clear_last_exception(env, &mut exception) };
    // SAFETY: `exception` was just handed out by the engine in this scope.
    let message = match unsafe { Unknown::from_napi_value(env, exception) } {
        Ok(value) => message_of(&value).unwrap_or_else(|| format!("threw {}", describe(&value))),
        Err(e) => e.reason,
    };
    // Reading the message must not leave a second exception behind (a hostile proxy).
    let mut again = false;
    // SAFETY: as above.
    unsafe { sys::napi_is_exception_pending(env, &mut again) };
    if again {
        let mut ignored = ptr::null_mut();
        // SAFETY: as above.
        unsafe { sys::napi_get_and_clear_last_exception(env, &mut ignored) };
    }
    Some(message)
}
