//! Declarative input: one struct is both the TypeScript type of an options object and its
//! reader. The struct is a `#[napi(object)]` for the typings, with no napi conversion of its
//! own; [`js_fields!`] reads it field by field through [`OptionsObject`], so
//! every bad value gets a `TypeError` or `RangeError` that names it (`thresholds.temperature`,
//! `stats.device`), and unknown keys are refused with the list of known ones.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown, ValueType};
use std::sync::Arc;

use super::args::{describe, js_string, range_violation, type_error, OptionsObject};
use crate::incident::IncidentSeverity;
use crate::policy::thresholds::{ThresholdSpec, MAX_SAFE_INTEGER};

/// A field of an options object, read by its key.
pub trait Field<'env>: Sized {
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self>;
}

impl<'env> Field<'env> for Option<f64> {
    /// A number; NaN and non-numbers are a `TypeError`.
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        options.number(key)
    }
}

impl<'env> Field<'env> for f64 {
    /// A number that must be given.
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        options.required_number(key)
    }
}

impl<'env> Field<'env> for Option<bool> {
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        options.boolean(key)
    }
}

impl<'env> Field<'env> for Option<String> {
    /// A non-empty string without NUL bytes (it may become a path).
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        options.string(key)
    }
}

impl<'env> Field<'env> for String {
    /// A non-empty string that must be given.
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        options.string(key)?.ok_or_else(|| {
            let message = format!("{} must be a string, got undefined", options.field_name(key));
            type_error(options.env(), "ERR_INVALID_ARG_TYPE", message)
        })
    }
}

/// A string that must be given; empty strings pass (an incident's `message`).
pub struct Text(pub String);

impl<'env> Field<'env> for Text {
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        let name = options.field_name(key);
        match options.raw(key)? {
            Some(value) => js_string(options.env(), &value, &name).map(Text),
            None => Err(type_error(
                options.env(),
                "ERR_INVALID_ARG_TYPE",
                format!("{name} must be a string, got undefined"),
            )),
        }
    }
}

impl<'env> Field<'env> for Option<serde_json::Value> {
    /// JSON data (`details`): what JSON cannot hold is a `TypeError` naming the field.
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        let name = options.field_name(key);
        options.raw(key)?.map(|value| super::json_value(options.env(), value, &name)).transpose()
    }
}

/// A count or position: a non-negative integer a JavaScript number holds exactly.
pub struct Count(pub u64);

impl<'env> Field<'env> for Option<Count> {
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        let Some(value) = options.number(key)? else { return Ok(None) };
        if value < 0.0 || value.fract() != 0.0 || value > MAX_SAFE_INTEGER {
            let message = format!("{} must be a non-negative integer, got {value}", options.field_name(key));
            return Err(super::args::range_error(options.env(), message));
        }
        Ok(Some(Count(value as u64)))
    }
}

impl<'env> Field<'env> for Option<Vec<String>> {
    /// An array of strings (`kinds`).
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        let Some(value) = options.raw(key)? else { return Ok(None) };
        let bad = || {
            let message = format!("{} must be an array of strings, got {}", options.field_name(key), describe(&value));
            type_error(options.env(), "ERR_INVALID_ARG_TYPE", message)
        };
        if !value.is_array()? {
            return Err(bad());
        }
        // SAFETY: the value was checked just above to be an array, which is an object.
        let array: Object = unsafe { value.cast()? };
        let mut list = Vec::new();
        for i in 0..array.get_array_length()? {
            let item: Unknown = array.get_element(i)?;
            if item.get_type()? != ValueType::String {
                return Err(bad());
            }
            // SAFETY: the element was checked just above to be a string.
            list.push(unsafe { item.cast::<String>()? });
        }
        Ok(Some(list))
    }
}

impl<'env> Field<'env> for Option<IncidentSeverity> {
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        let Some(value) = options.raw(key)? else { return Ok(None) };
        let name = options.field_name(key);
        let text = js_string(options.env(), &value, &name)?;
        let words: Vec<&str> = IncidentSeverity::ALL.iter().map(|s| s.as_str()).collect();
        let message = format!("{name} must be {}, got {text:?}", super::args::alternatives(&words));
        IncidentSeverity::parse(&text).map(Some).ok_or_else(|| super::args::range_error(options.env(), message))
    }
}

/// When a span starts (`since`): ms since the epoch, or text as `report::since` reads it
/// (`12h`, an ISO date or time).
pub struct Since(pub u64);

impl<'env> Field<'env> for Option<Since> {
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        let Some(value) = options.raw(key)? else { return Ok(None) };
        let name = options.field_name(key);
        if value.get_type()? == ValueType::Number {
            return Ok(Option::<Count>::read(options, key)?.map(|Count(ms)| Since(ms)));
        }
        if value.get_type()? != ValueType::String {
            let message = format!("{name} must be a number or a string, got {}", describe(&value));
            return Err(type_error(options.env(), "ERR_INVALID_ARG_TYPE", message));
        }
        let text = js_string(options.env(), &value, &name)?;
        let now = crate::sampling::unix_time_ms().max(0.0) as u64;
        crate::report::since::parse_since(&text, now)
            .map(|ms| Some(Since(ms)))
            .map_err(|e| super::args::range_error(options.env(), format!("{name} {e}")))
    }
}

/// A number where `null` also means "not set", as `expectedGpus: null`.
pub struct Nullable(pub f64);

impl<'env> Field<'env> for Option<Nullable> {
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        Ok(options.optional_number(key)?.map(Nullable))
    }
}

/// A number where `null` means "off" and `undefined` "the default", as `fastSampleMs`:
/// `Some(OrOff(None))` is off.
pub struct OrOff(pub Option<f64>);

impl<'env> Field<'env> for Option<OrOff> {
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        if options.raw(key)?.is_none() {
            return Ok(None);
        }
        Ok(Some(OrOff(options.optional_number(key)?)))
    }
}

impl<'env> Field<'env> for Option<Arc<dyn crate::recovery::engine::Hook>> {
    /// A function called as a recovery hook.
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        super::hooks::read_hook(options.env(), options, key)
    }
}

impl<'env> Field<'env> for Option<Arc<dyn crate::durable::manager::DataHook>> {
    /// A function that takes and gives JSON data.
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        super::hooks::read_data_hook(options.env(), options, key)
    }
}

/// A JavaScript class of this package whose instances a constructor takes in its options.
pub trait Attachable: JavaScriptClassExt + MaybeTypeTag + 'static {
    /// The class name users see in messages.
    const JS_NAME: &'static str;
    /// What another part keeps of an instance (its core).
    type Core;
    fn core(&self) -> Self::Core;
}

/// An instance of `T` given as an option, as its core.
pub struct Instance<T: Attachable>(pub T::Core);

impl<'env, T: Attachable> Field<'env> for Option<Instance<T>> {
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        let Some(value) = options.raw(key)? else { return Ok(None) };
        let name = options.field_name(key);
        super::hooks::read_instance(options.env(), Some(value), &name, T::JS_NAME, |t: &T| Instance(t.core())).map(Some)
    }
}

/// An object of options: its keys, and how it is read from an [`OptionsObject`].
pub trait Fields<'env>: Sized {
    const KEYS: &'static [&'static str];
    fn read_fields(options: &OptionsObject<'env>) -> Result<Self>;

    /// Reads `value` as this object: `undefined` is `None`; what is not an object, or has
    /// keys not in [`Self::KEYS`], is a `TypeError` naming `name`.
    fn read(env: &'env Env, value: Option<Unknown<'env>>, name: &str) -> Result<Option<Self>> {
        OptionsObject::read(env, value, name, Self::KEYS)?.map(|o| Self::read_fields(&o)).transpose()
    }

    /// Like [`read`](Self::read), for an object that must be given.
    fn required(env: &'env Env, value: Option<Unknown<'env>>, name: &str) -> Result<Self> {
        Self::read_fields(&OptionsObject::required(env, value, name, Self::KEYS)?)
    }
}

impl<'env, T: Fields<'env>> Field<'env> for Option<T> {
    /// A nested object: `undefined` is none, `null` a `TypeError`.
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        options.object(key, T::KEYS)?.map(|o| T::read_fields(&o)).transpose()
    }
}

/// A number field checked against its spec: a `RangeError` (the spec's message names the
/// field) when out of range.
pub trait InRange: Sized {
    fn in_range(self, spec: ThresholdSpec, env: &Env) -> Result<Self>;
}

impl InRange for f64 {
    fn in_range(self, spec: ThresholdSpec, env: &Env) -> Result<Self> {
        spec.check(self).map_err(|e| range_violation(env, e))
    }
}

impl InRange for Option<f64> {
    fn in_range(self, spec: ThresholdSpec, env: &Env) -> Result<Self> {
        self.map(|v| v.in_range(spec, env)).transpose()
    }
}

impl InRange for Option<Nullable> {
    fn in_range(self, spec: ThresholdSpec, env: &Env) -> Result<Self> {
        Ok(self.map(|n| n.0).in_range(spec, env)?.map(Nullable))
    }
}

impl InRange for Option<OrOff> {
    fn in_range(self, spec: ThresholdSpec, env: &Env) -> Result<Self> {
        self.map(|OrOff(n)| n.in_range(spec, env).map(OrOff)).transpose()
    }
}

/// Makes a `#[napi(object, object_from_js = false, object_to_js = false)]` struct (the
/// typings) its own reader: each field with its JavaScript key, and `check SPEC` for a
/// number's range. A field left out of the list does not compile.
macro_rules! js_fields {
    ($name:ident { $($field:ident = $key:literal $(check $spec:expr)?),* $(,)? }) => {
        impl<'env> $crate::js::input::Fields<'env> for $name {
            const KEYS: &'static [&'static str] = &[$($key),*];
            fn read_fields(options: &$crate::js::args::OptionsObject<'env>) -> napi::Result<Self> {
                Ok($name { $($field: js_fields!(@field options, $key $(, $spec)?),)* })
            }
        }
    };
    (@field $options:ident, $key:literal) => {
        $crate::js::input::Field::read($options, $key)?
    };
    (@field $options:ident, $key:literal, $spec:expr) => {
        $crate::js::input::InRange::in_range($crate::js::input::Field::read($options, $key)?, $spec, $options.env())?
    };
}

pub(crate) use js_fields;
