//! JavaScript functions as recovery hooks. A hook may be sync or async, may throw, reject or
//! never settle: it is called through a weak threadsafe function (it never keeps the process
//! alive) and the engine bounds it with the step timeout.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Env, JsValue, Unknown, ValueType};
use std::sync::Arc;

use super::args::{describe, type_error, OptionsObject};
use super::engine::{call, global, take_exception};
use super::json::{from_js, JsonOut};
use super::promise::{settle_later, Settlement};
use crate::durable::manager::{DataHook, HookFuture as DataHookFuture};
use crate::recovery::engine::{Hook, HookFuture, StepError};

/// The argument a hook gets: nothing, or (for `emergencyCleanup`) the step's error.
pub struct HookArg(Option<StepError>);

impl ToNapiValue for HookArg {
    unsafe fn to_napi_value(env: napi::sys::napi_env, value: Self) -> Result<napi::sys::napi_value> {
        match value.0 {
            // SAFETY: `env` is the live environment napi-rs passes to this conversion.
            None => unsafe { <()>::to_napi_value(env, ()) },
            Some(error) => {
                let env = Env::from_raw(env);
                let mut object = env.create_error(Error::new(Status::GenericFailure, error.message))?;
                object.set_named_property("code", error.code)?;
                object.set_named_property("step", error.step)?;
                Ok(object.raw())
            }
        }
    }
}

/// What a hook returned: a promise or other thenable to wait for, or anything else (it finished).
pub enum HookReturn {
    Finished,
    Pending(Settlement<()>),
}

/// A hook's return value as a native promise to wait for: a promise as it is, any other
/// thenable (an object or function with a callable `then`) through `Promise.resolve`, which
/// adopts it as `await` would; `None` for a value that is no thenable (the hook finished).
/// A `then` getter that throws makes a rejected promise; no exception is left pending.
///
/// # Safety
/// `env` and `value` must be valid handles of the current JS thread's scope.
pub unsafe fn as_promise(
    env: napi::sys::napi_env,
    value: napi::sys::napi_value,
) -> Result<Option<napi::sys::napi_value>> {
    use napi::sys;
    use std::ptr;
    // SAFETY: `env` and `value` are valid in the current scope (this function's contract); out pointers are locals.
    unsafe {
        let mut is_promise = false;
        napi::check_status!(sys::napi_is_promise(env, value, &mut is_promise))?;
        if is_promise {
            return Ok(Some(value));
        }
        let mut kind = 0;
        napi::check_status!(sys::napi_typeof(env, value, &mut kind))?;
        if kind != sys::ValueType::napi_object && kind != sys::ValueType::napi_function {
            return Ok(None);
        }
        let mut then = ptr::null_mut();
        let thenable = match sys::napi_get_named_property(env, value, c"then".as_ptr(), &mut then) {
            sys::Status::napi_ok => {
                let mut then_kind = 0;
                napi::check_status!(sys::napi_typeof(env, then, &mut then_kind))?;
                then_kind == sys::ValueType::napi_function
            }
            // The getter threw: `Promise.resolve` reads it again and rejects with what it throws.
            _ => take_exception(env).is_some(),
        };
        if !thenable {
            return Ok(None);
        }
        let promise_class = global(env, &[c"Promise"])?;
        let resolve = global(env, &[c"Promise", c"resolve"])?;
        let promise = call(env, Some(promise_class), resolve, &[value])
            .map_err(|message| Error::new(Status::GenericFailure, message))?;
        Ok(Some(promise))
    }
}

/// Runs a conversion of what a hook returned on the JS thread: an exception it raised (a
/// throwing getter, `then`, or `toJSON`) is taken and becomes the error, so it fails that
/// call and nothing else.
///
/// # Safety
/// `env` and the handles given must be valid in the current JS thread's scope.
unsafe fn catching<T>(env: napi::sys::napi_env, convert: impl FnOnce() -> Result<T>) -> Result<T> {
    // SAFETY: on the JS thread, with the environment of the conversion (this function's contract).
    convert().map_err(|e| match unsafe { take_exception(env) } {
        Some(message) => Error::new(Status::GenericFailure, message),
        None => e,
    })
}

impl FromNapiValue for HookReturn {
    unsafe fn from_napi_value(env: napi::sys::napi_env, value: napi::sys::napi_value) -> Result<Self> {
        // SAFETY: napi-rs calls this conversion on the JS thread with a live `env` and `value`.
        unsafe {
            catching(env, || match as_promise(env, value)? {
                Some(promise) => Ok(HookReturn::Pending(settle_later(env, promise, |_, _| Ok(()))?)),
                None => Ok(HookReturn::Finished),
            })
        }
    }
}

type HookFunction = ThreadsafeFunction<HookArg, HookReturn, HookArg, Status, false, true>;

pub struct JsHook(Arc<HookFunction>);

impl Hook for JsHook {
    fn invoke(&self, cause: Option<&StepError>) -> HookFuture {
        let function = self.0.clone();
        let arg = HookArg(cause.cloned());
        Box::pin(async move {
            match function.call_async_catch(arg).await {
                Ok(HookReturn::Pending(settlement)) => settlement.await,
                Ok(HookReturn::Finished) => Ok(()),
                Err(thrown) => Err(thrown.reason.clone()),
            }
        })
    }
}

/// Reads an optional hook: `undefined` is none, a function becomes a hook, anything else
/// is a `TypeError` naming it.
pub fn read_hook(env: &Env, options: &OptionsObject, key: &str) -> Result<Option<Arc<dyn Hook>>> {
    let Some(value) = read_function(env, options, key)? else { return Ok(None) };
    // SAFETY: `read_function` checked that the value is a function.
    let function: Function<'_, HookArg, HookReturn> = unsafe { value.cast()? };
    let threadsafe =
        function.build_threadsafe_function::<HookArg>().weak::<true>().callee_handled::<false>().build()?;
    Ok(Some(Arc::new(JsHook(Arc::new(threadsafe)))))
}

/// An optional function option: `undefined` is none, anything else but a function is a
/// `TypeError` naming the option.
pub fn read_function<'env>(env: &Env, options: &OptionsObject<'env>, key: &str) -> Result<Option<Unknown<'env>>> {
    let Some(value) = options.raw(key)? else { return Ok(None) };
    if value.get_type()? != ValueType::Function {
        return Err(type_error(
            env,
            "ERR_INVALID_ARG_TYPE",
            format!("{key} must be a function, got {}", describe(&value)),
        ));
    }
    Ok(Some(value))
}

/// Reads the required first argument of a recovery constructor, an instance of `T`, and
/// takes what the recovery needs from it.
pub fn read_instance<T: JavaScriptClassExt + MaybeTypeTag + 'static, R>(
    env: &Env,
    value: Option<Unknown>,
    name: &str,
    class: &str,
    take: impl FnOnce(&T) -> R,
) -> Result<R> {
    let value = match value {
        Some(v) if T::instance_of(env, &v)? => v,
        Some(v) => {
            return Err(type_error(
                env,
                "ERR_INVALID_ARG_TYPE",
                format!("{name} must be a {class}, got {}", describe(&v)),
            ))
        }
        None => {
            return Err(type_error(env, "ERR_INVALID_ARG_TYPE", format!("{name} must be a {class}, got undefined")))
        }
    };
    // SAFETY: `instance_of` checked above that `value` is an instance of `T`, and
    // `from_napi_value` checks its type tag again; the instance stays owned by its JS object.
    let instance = unsafe { ClassInstance::<T>::from_napi_value(env.raw(), value.raw())? };
    Ok(take(&instance))
}

/// What a data hook returned: a value, or a promise of one.
pub enum ValueReturn {
    Now(serde_json::Value),
    Later(Settlement<serde_json::Value>),
}

impl FromNapiValue for ValueReturn {
    unsafe fn from_napi_value(env: napi::sys::napi_env, value: napi::sys::napi_value) -> Result<Self> {
        // SAFETY: napi-rs calls this conversion on the JS thread with a live `env` and `value`.
        unsafe {
            catching(env, || match as_promise(env, value)? {
                Some(promise) => {
                    let convert = |env, value| from_js(env, value);
                    Ok(ValueReturn::Later(settle_later(env, promise, convert)?))
                }
                None => from_js(env, value).map(ValueReturn::Now).map_err(|e| Error::new(Status::GenericFailure, e)),
            })
        }
    }
}

/// A hook that takes JSON data and gives JSON data back (`captureState`, the restore hooks).
type DataFunction = ThreadsafeFunction<JsonOut, ValueReturn, JsonOut, Status, false, true>;

pub struct JsDataHook(Arc<DataFunction>);

impl DataHook for JsDataHook {
    /// Its value, or why it failed (threw, rejected, or returned what JSON cannot hold); the
    /// manager bounds it with the step timeout.
    fn call(&self, arg: serde_json::Value) -> DataHookFuture {
        let function = self.0.clone();
        Box::pin(async move {
            match function.call_async_catch(JsonOut(arg)).await {
                Ok(ValueReturn::Now(value)) => Ok(value),
                Ok(ValueReturn::Later(settlement)) => settlement.await,
                Err(e) => Err(e.reason.clone()),
            }
        })
    }
}

/// Reads an optional data hook (see [`read_hook`]).
pub fn read_data_hook(env: &Env, options: &OptionsObject, key: &str) -> Result<Option<Arc<dyn DataHook>>> {
    let Some(value) = read_function(env, options, key)? else { return Ok(None) };
    // SAFETY: `read_function` checked that `value` is a function.
    let function: Function<'_, JsonOut, ValueReturn> = unsafe { value.cast()? };
    let threadsafe =
        function.build_threadsafe_function::<JsonOut>().weak::<true>().callee_handled::<false>().build()?;
    Ok(Some(Arc::new(JsDataHook(Arc::new(threadsafe)))))
}
