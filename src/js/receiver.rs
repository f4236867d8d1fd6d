//! Who a class member is called on. V8 refuses a foreign `this` for methods with a plain
//! "Illegal invocation" and napi-rs refuses it for accessors with `InvalidArg`; a class
//! called without `new` would wrap `globalThis` or the exports object. Every member of every
//! class prototype is wrapped at load so that a foreign `this` is a `TypeError` with code
//! `ERR_INVALID_ARG_TYPE`, and every constructor checks that it runs under `new`.

use napi::bindgen_prelude::*;
use napi::{sys, Env, JsValue, Unknown};
use std::ffi::CString;
use std::ptr;

use super::args::{describe, type_error};
use super::engine::{call, global, take_exception};

/// What a wrapper needs: the class's type tag, names for the message, the original member.
struct Member {
    tag: sys::napi_type_tag,
    class: &'static str,
    name: String,
    original: sys::napi_ref,
}

/// Throws a `TypeError` with `code`; for the raw callbacks below.
///
/// # Safety
/// `env` and the handles given must be valid in the current JS thread's scope.
unsafe fn throw_type_error(env: sys::napi_env, code: &str, message: String) {
    let code = CString::new(code).unwrap_or_default();
    let message = CString::new(message).unwrap_or_default();
    // SAFETY: `env` is the current environment (the caller's contract); both strings are NUL-terminated and outlive the
    // call.
    unsafe { sys::napi_throw_type_error(env, code.as_ptr(), message.as_ptr()) };
}

/// The wrapper put in place of every method, getter and setter: checks `this`, then calls
/// the member napi-rs defined with the same `this` and arguments.
unsafe extern "C" fn checked_member(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: the engine calls this on the JS thread with a live `env` and `info`; `data` is the `Member` this wrapper
    // was made with, freed only by the wrapper's finalizer, so it outlives every call.
    let run = || unsafe {
        let (mut argc, mut this, mut data) = (0usize, ptr::null_mut(), ptr::null_mut());
        if sys::napi_get_cb_info(env, info, &mut argc, ptr::null_mut(), &mut this, &mut data) != sys::Status::napi_ok {
            return ptr::null_mut();
        }
        let mut argv = vec![ptr::null_mut(); argc];
        if argc > 0
            && sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), ptr::null_mut())
                != sys::Status::napi_ok
        {
            return ptr::null_mut();
        }
        let member = &*(data as *const Member);
        let mut matches = false;
        // A primitive `this` is no object: the check fails with a status, and matches stays false.
        let _ = sys::napi_check_object_type_tag(env, this, &member.tag, &mut matches);
        let _ = take_exception(env);
        if !matches {
            let got = Unknown::from_napi_value(env, this).map(|v| describe(&v)).unwrap_or_default();
            throw_type_error(
                env,
                "ERR_INVALID_ARG_TYPE",
                format!("{}.{} must be called on a {}, got {got}", member.class, member.name, member.class),
            );
            return ptr::null_mut();
        }
        let mut original = ptr::null_mut();
        if sys::napi_get_reference_value(env, member.original, &mut original) != sys::Status::napi_ok {
            return ptr::null_mut();
        }
        let mut result = ptr::null_mut();
        // A throw from the member stays pending: it is the call's exception.
        sys::napi_call_function(env, this, original, argc, argv.as_ptr(), &mut result);
        result
    };
    std::panic::catch_unwind(run).unwrap_or(ptr::null_mut())
}

unsafe extern "C" fn free_member(env: sys::napi_env, data: *mut std::ffi::c_void, _hint: *mut std::ffi::c_void) {
    // SAFETY: `data` is the `Box<Member>` leaked in `wrapper`; the finalizer runs once.
    let member = unsafe { Box::from_raw(data as *mut Member) };
    // SAFETY: `member.original` is a reference made in this environment and deleted only here.
    unsafe { sys::napi_delete_reference(env, member.original) };
}

/// A wrapper of `original` (a function) for the member `name` of `class`.
///
/// # Safety
/// `env` and the handles given must be valid in the current JS thread's scope.
unsafe fn wrapper(
    env: sys::napi_env,
    tag: sys::napi_type_tag,
    class: &'static str,
    name: &str,
    original: sys::napi_value,
) -> Result<sys::napi_value> {
    // SAFETY: `env` and `original` are valid in the current scope (the caller's contract); `member` is freed by the
    // finalizer, or right here when it could not be attached.
    unsafe {
        let mut reference = ptr::null_mut();
        napi::check_status!(sys::napi_create_reference(env, original, 1, &mut reference))?;
        let member = Box::into_raw(Box::new(Member { tag, class, name: name.to_owned(), original: reference }));
        let mut function = ptr::null_mut();
        let created = sys::napi_create_function(
            env,
            name.as_ptr().cast(),
            name.len() as isize,
            Some(checked_member),
            member.cast(),
            &mut function,
        );
        // Freed with the wrapper (an environment that ends, a worker that exits).
        if created != sys::Status::napi_ok
            || sys::napi_add_finalizer(
                env,
                function,
                member.cast(),
                Some(free_member),
                ptr::null_mut(),
                ptr::null_mut(),
            ) != sys::Status::napi_ok
        {
            free_member(env, member.cast(), ptr::null_mut());
            return Err(Error::new(Status::GenericFailure, format!("could not guard {class}.{name}")));
        }
        Ok(function)
    }
}

/// Wraps every method and accessor on the prototype of the class `exports[class]`, whose
/// instances carry the type tag of `T`.
pub fn guard_members<T: TypeTag>(env: &Env, exports: &Object, class: &'static str) -> Result<()> {
    let tag = T::type_tag();
    let constructor: Unknown = exports.get_named_property(class)?;
    // SAFETY: a class is a function, and a function is an object: read it as the object it also is.
    let constructor: Object = unsafe { constructor.cast()? };
    let prototype: Object = constructor.get_named_property("prototype")?;
    let names = prototype.get_all_property_names(
        napi::KeyCollectionMode::OwnOnly,
        napi::KeyFilter::SkipSymbols,
        napi::KeyConversion::NumbersToStrings,
    )?;
    let raw = env.raw();
    // SAFETY: `raw` is this call's live environment; every handle used is made or read in this scope.
    unsafe {
        let describe_property = global(raw, &[c"Object", c"getOwnPropertyDescriptor"])?;
        let define_property = global(raw, &[c"Object", c"defineProperty"])?;
        let failed = |message| Error::new(Status::GenericFailure, message);
        for i in 0..names.get_array_length()? {
            let name: String = names.get_element(i)?;
            if name == "constructor" {
                continue;
            }
            let key = env.create_string(&name)?.raw();
            let descriptor: Object = Object::from_napi_value(
                raw,
                call(raw, None, describe_property, &[prototype.raw(), key]).map_err(failed)?,
            )?;
            let mut replacement = Object::new(env)?;
            for field in ["value", "get", "set"] {
                let value: Unknown = descriptor.get_named_property(field)?;
                if value.get_type()? == ValueType::Function {
                    replacement.set_named_property(
                        field,
                        Unknown::from_raw_unchecked(raw, wrapper(raw, tag, class, &name, value.raw())?),
                    )?;
                }
            }
            call(raw, None, define_property, &[prototype.raw(), key, replacement.raw()]).map_err(failed)?;
        }
    }
    Ok(())
}

/// Refuses a constructor called without `new` (its `this` is then `globalThis`, the exports
/// object or another object, never a fresh instance of `T`), and one called on an instance
/// that already exists.
pub fn require_new<T: JavaScriptClassExt + 'static>(env: &Env, this: &Unknown, class: &str) -> Result<()> {
    let fresh = T::instance_of(env, this)? && {
        let mut wrapped = ptr::null_mut();
        // SAFETY: `this` is a handle in this call's scope; unwrapping only reads the wrapped pointer, and the exception
        // a failure leaves is cleared next.
        let status = unsafe { sys::napi_unwrap(env.raw(), this.raw(), &mut wrapped) };
        // SAFETY: on the JS thread, with this call's environment.
        unsafe { take_exception(env.raw()) };
        status != sys::Status::napi_ok
    };
    if fresh {
        Ok(())
    } else {
        Err(type_error(
            env,
            "ERR_CONSTRUCT_CALL_REQUIRED",
            format!("Class constructor {class} cannot be invoked without 'new'"),
        ))
    }
}
