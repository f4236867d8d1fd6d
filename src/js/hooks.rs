//! JavaScript functions as recovery hooks. A hook may be sync or async, may throw, reject or
//! never settle: it is called through a weak threadsafe function (it never keeps the process
//! alive) and the engine bounds it with the step timeout.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Env, JsValue, Unknown, ValueType};
use std::sync::Arc;

use super::args::{describe, type_error, OptionsObject};
use super::promise::{settle_later, Settlement};
use crate::recovery::engine::{Hook, HookFuture, StepError};

/// The argument a hook gets: nothing, or (for `emergencyCleanup`) the step's error.
pub struct HookArg(Option<StepError>);

impl ToNapiValue for HookArg {
    unsafe fn to_napi_value(env: napi::sys::napi_env, value: Self) -> Result<napi::sys::napi_value> {
        match value.0 {
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

/// What a hook returned: a promise to wait for, or anything else (it finished).
pub enum HookReturn {
    Finished,
    Pending(Settlement<()>),
}

/// Whether a hook's return value is a promise (then it is waited for).
unsafe fn is_promise(env: napi::sys::napi_env, value: napi::sys::napi_value) -> Result<bool> {
    let mut is_promise = false;
    napi::check_status!(unsafe { napi::sys::napi_is_promise(env, value, &mut is_promise) })?;
    Ok(is_promise)
}

impl FromNapiValue for HookReturn {
    unsafe fn from_napi_value(env: napi::sys::napi_env, value: napi::sys::napi_value) -> Result<Self> {
        if unsafe { is_promise(env, value)? } {
            Ok(HookReturn::Pending(unsafe { settle_later(env, value, |_, _| Ok(()))? }))
        } else {
            Ok(HookReturn::Finished)
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
    let function: Function<'_, HookArg, HookReturn> = unsafe { value.cast()? };
    let threadsafe =
        function.build_threadsafe_function::<HookArg>().weak::<true>().callee_handled::<false>().build()?;
    Ok(Some(Arc::new(JsHook(Arc::new(threadsafe)))))
}

/// An optional function option: `undefined` is none, anything else but a function is a
/// `TypeError` naming the option.
fn read_function<'env>(env: &Env, options: &OptionsObject<'env>, key: &str) -> Result<Option<Unknown<'env>>> {
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
    // Checks the class's type tag before use; the instance stays owned by its JS object.
    let instance = unsafe { ClassInstance::<T>::from_napi_value(env.raw(), value.raw())? };
    Ok(take(&instance))
}

/// JSON data from JavaScript, where `undefined` (a hook that returns nothing) is `null`.
pub struct Json(pub serde_json::Value);

impl FromNapiValue for Json {
    unsafe fn from_napi_value(env: napi::sys::napi_env, value: napi::sys::napi_value) -> Result<Self> {
        let mut kind = 0;
        napi::check_status!(unsafe { napi::sys::napi_typeof(env, value, &mut kind) })?;
        if kind == napi::sys::ValueType::napi_undefined {
            return Ok(Json(serde_json::Value::Null));
        }
        Ok(Json(unsafe { serde_json::Value::from_napi_value(env, value)? }))
    }
}

/// What a data hook returned: a value, or a promise of one.
pub enum ValueReturn {
    Now(serde_json::Value),
    Later(Settlement<serde_json::Value>),
}

impl FromNapiValue for ValueReturn {
    unsafe fn from_napi_value(env: napi::sys::napi_env, value: napi::sys::napi_value) -> Result<Self> {
        if unsafe { is_promise(env, value)? } {
            let convert =
                |env, value| unsafe { Json::from_napi_value(env, value) }.map(|json| json.0).map_err(|e| e.reason);
            Ok(ValueReturn::Later(unsafe { settle_later(env, value, convert)? }))
        } else {
            Ok(ValueReturn::Now(unsafe { Json::from_napi_value(env, value)? }.0))
        }
    }
}

/// A hook that takes JSON data and gives JSON data back (`captureState`, the restore hooks).
pub type DataHook = ThreadsafeFunction<serde_json::Value, ValueReturn, serde_json::Value, Status, false, true>;

/// Reads an optional data hook (see [`read_hook`]).
pub fn read_data_hook(env: &Env, options: &OptionsObject, key: &str) -> Result<Option<Arc<DataHook>>> {
    let Some(value) = read_function(env, options, key)? else { return Ok(None) };
    let function: Function<'_, serde_json::Value, ValueReturn> = unsafe { value.cast()? };
    Ok(Some(Arc::new(
        function.build_threadsafe_function::<serde_json::Value>().weak::<true>().callee_handled::<false>().build()?,
    )))
}

/// Calls a data hook under `timeout`: its value, or why it failed (threw, rejected, returned
/// what JSON cannot hold, or did not settle in time).
pub async fn call_data_hook(
    hook: &DataHook,
    arg: serde_json::Value,
    timeout: std::time::Duration,
    name: &str,
) -> std::result::Result<serde_json::Value, (&'static str, String)> {
    let call = async {
        match hook.call_async_catch(arg).await {
            Ok(ValueReturn::Now(value)) => Ok(value),
            Ok(ValueReturn::Later(settlement)) => settlement.await,
            Err(e) => Err(e.reason.clone()),
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(("ERR_STEP_FAILED", format!("{name} failed: {message}"))),
        Err(_) => Err(("ERR_STEP_TIMEOUT", format!("{name} did not finish within {} ms", timeout.as_millis()))),
    }
}
