//! JSON data between Rust and JavaScript, through the engine's own `JSON.stringify` and
//! `JSON.parse`.
//!
//! napi's `serde_json::Value` conversion stops at 1,000,000 values per call and sets
//! properties by assignment, so a `"__proto__"` key became a prototype. Text has neither
//! limit: `JSON.parse` makes every key an own data property, whatever its name, and takes
//! whatever size the engine can hold. Reading goes the same way, and a getter, `toJSON` or
//! proxy that throws is caught here, never left pending in a native callback.

use napi::bindgen_prelude::*;
use napi::sys;
use serde_json::Value;
use std::ptr;

use super::args::type_error;
use super::engine::{call, global, take_exception};

/// JSON data for JavaScript: every value of this package that holds user data or JSON-shaped
/// results is handed over as this.
pub struct JsonOut(pub Value);

impl From<Value> for JsonOut {
    fn from(value: Value) -> Self {
        JsonOut(value)
    }
}

impl TypeName for JsonOut {
    fn type_name() -> &'static str {
        "JSON"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ToNapiValue for JsonOut {
    unsafe fn to_napi_value(env: sys::napi_env, value: Self) -> Result<sys::napi_value> {
        let text = serde_json::to_string(&value.0).map_err(|e| Error::new(Status::GenericFailure, e.to_string()))?;
        // SAFETY: `env` is the live environment napi-rs passes to this conversion.
        unsafe { parse(env, &text) }
    }
}

/// A core shape (`crate::shapes`) for JavaScript, as its JSON text: the keys keep the order
/// the shape defines (a `serde_json::Value` would sort them).
pub struct JsonShape(String);

impl JsonShape {
    pub fn of(value: &impl serde::Serialize) -> Self {
        // The shapes are plain data with string keys: serializing them cannot fail.
        JsonShape(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
    }
}

impl TypeName for JsonShape {
    fn type_name() -> &'static str {
        "JSON"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ToNapiValue for JsonShape {
    unsafe fn to_napi_value(env: sys::napi_env, value: Self) -> Result<sys::napi_value> {
        // SAFETY: `env` is the live environment napi-rs passes to this conversion.
        unsafe { parse(env, &value.0) }
    }
}

/// `JSON.parse(text)`; a failure (text over the engine's string limit) is an error, with no
/// exception left pending.
///
/// # Safety
/// `env` and the handles given must be valid in the current JS thread's scope.
unsafe fn parse(env: sys::napi_env, text: &str) -> Result<sys::napi_value> {
    // SAFETY: `env` is the current JS thread's environment (this function's contract); pointer and length come from
    // `text`, which outlives the call.
    unsafe {
        let parse = global(env, &[c"JSON", c"parse"])?;
        let mut string = ptr::null_mut();
        let status = sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut string);
        if status != sys::Status::napi_ok {
            let _ = take_exception(env);
            return Err(Error::new(
                Status::GenericFailure,
                format!("a JSON value of {} bytes is too large for a JavaScript string", text.len()),
            ));
        }
        call(env, None, parse, &[string]).map_err(|message| Error::new(Status::GenericFailure, message))
    }
}

/// The replacer given to `JSON.stringify`: functions and symbols are no data, and would be
/// dropped without a word; they are refused instead (bigints and cycles throw by themselves).
unsafe extern "C" fn refuse_non_data(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut argc = 2;
    let mut argv = [ptr::null_mut(); 2];
    // SAFETY: the engine calls this replacer on the JS thread with a live `env` and `info`; `argv` has room for the two
    // arguments asked for.
    unsafe {
        if sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), ptr::null_mut())
            != sys::Status::napi_ok
        {
            return ptr::null_mut();
        }
        let mut kind = 0;
        sys::napi_typeof(env, argv[1], &mut kind);
        let what = match kind {
            sys::ValueType::napi_function => "a function",
            sys::ValueType::napi_symbol => "a symbol",
            _ => return argv[1],
        };
        let message = std::ffi::CString::new(format!("{what} is not JSON data")).unwrap_or_default();
        sys::napi_throw_type_error(env, ptr::null(), message.as_ptr());
        ptr::null_mut()
    }
}

/// The JSON text of a JavaScript value, as `JSON.stringify` writes it, with functions and
/// symbols refused; `None` for `undefined`. `Err` carries what went wrong (a cycle, a bigint,
/// a getter that threw); no exception is left pending.
///
/// # Safety
/// `env` and `value` must be valid handles of the current JS thread's scope.
pub unsafe fn stringify(env: sys::napi_env, value: sys::napi_value) -> std::result::Result<Option<String>, String> {
    // SAFETY: `env` and `value` are valid in the current scope (this function's contract); out pointers are locals.
    unsafe {
        let function = global(env, &[c"JSON", c"stringify"]).map_err(|e| e.reason)?;
        let mut replacer = ptr::null_mut();
        let status = sys::napi_create_function(
            env,
            c"refuseNonData".as_ptr(),
            13,
            Some(refuse_non_data),
            ptr::null_mut(),
            &mut replacer,
        );
        if status != sys::Status::napi_ok {
            return Err(take_exception(env).unwrap_or_else(|| format!("napi status {status}")));
        }
        let text = call(env, None, function, &[value, replacer])?;
        let mut kind = 0;
        sys::napi_typeof(env, text, &mut kind);
        if kind != sys::ValueType::napi_string {
            return Ok(None);
        }
        String::from_napi_value(env, text).map(Some).map_err(|e| {
            let _ = take_exception(env);
            e.reason
        })
    }
}

/// A JavaScript value as JSON data (`undefined` is `null`); `Err` says why it is not.
///
/// # Safety
/// `env` and `value` must be valid handles of the current JS thread's scope.
pub unsafe fn from_js(env: sys::napi_env, value: sys::napi_value) -> std::result::Result<Value, String> {
    // SAFETY: this function's own contract is what `stringify` needs.
    match unsafe { stringify(env, value)? } {
        None => Ok(Value::Null),
        Some(text) => serde_json::from_str(&text).map_err(|e| e.to_string()),
    }
}

/// A JavaScript value given to an entry point as JSON data; `name` is used in the `TypeError`
/// for what cannot be (functions, symbols, bigints, cycles, what a getter threw, nesting
/// beyond what the durable formats take).
/// An optional JSON argument: absent or `undefined` is `null`, anything else as
/// [`json_value`] reads it.
pub fn optional_json_value(env: &napi::Env, value: Option<Unknown>, name: &str) -> Result<Value> {
    match value.filter(|v| !matches!(v.get_type(), Ok(napi::ValueType::Undefined))) {
        Some(value) => json_value(env, value, name),
        None => Ok(Value::Null),
    }
}

pub fn json_value(env: &napi::Env, value: Unknown, name: &str) -> Result<Value> {
    // SAFETY: `env` is this call's live environment and `value` a handle in its scope.
    unsafe { from_js(env.raw(), napi::JsValue::raw(&value)) }.map_err(|reason| {
        type_error(env, "ERR_INVALID_ARG_TYPE", format!("{name} must be JSON-serialisable data: {reason}"))
    })
}
