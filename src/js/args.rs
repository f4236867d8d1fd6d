//! Validation of values that come from JavaScript. Bad input throws a `TypeError` or a
//! `RangeError` whose message names the parameter, what was expected and what was given,
//! with Node's own codes (`ERR_INVALID_ARG_TYPE`, `ERR_OUT_OF_RANGE`, `ERR_INVALID_ARG_VALUE`).

use napi::bindgen_prelude::*;
use napi::{Env, JsValue, Unknown, ValueType};

use crate::policy::thresholds::{js_number, RangeViolation};

/// Throws a `TypeError` and returns the error that tells napi it is already pending.
pub fn type_error(env: &Env, code: &str, message: String) -> Error {
    let _ = env.throw_type_error(&message, Some(code));
    Error::new(Status::PendingException, message)
}

/// Throws a `RangeError` (see [`type_error`]).
pub fn range_error(env: &Env, message: String) -> Error {
    let _ = env.throw_range_error(&message, Some("ERR_OUT_OF_RANGE"));
    Error::new(Status::PendingException, message)
}

pub fn range_violation(env: &Env, violation: RangeViolation) -> Error {
    range_error(env, violation.to_string())
}

/// How a value is described in messages: `got 1.5`, `got a string`, `got null`.
pub fn describe(value: &Unknown) -> String {
    match value.get_type() {
        // SAFETY: the match arm checked that the value is a number.
        Ok(ValueType::Number) => match unsafe { value.cast::<f64>() } {
            Ok(n) => js_number(n),
            Err(_) => "a number".to_owned(),
        },
        Ok(ValueType::Null) => "null".to_owned(),
        Ok(ValueType::Undefined) => "undefined".to_owned(),
        Ok(ValueType::String) => "a string".to_owned(),
        Ok(ValueType::Boolean) => "a boolean".to_owned(),
        Ok(ValueType::Function) => "a function".to_owned(),
        Ok(ValueType::BigInt) => "a bigint".to_owned(),
        Ok(ValueType::Symbol) => "a symbol".to_owned(),
        Ok(ValueType::Object) if value.is_array().unwrap_or(false) => "an array".to_owned(),
        Ok(ValueType::Object) => "an object".to_owned(),
        _ => "an unknown value".to_owned(),
    }
}

/// A string argument: anything else is a `TypeError` naming `name` (empty strings pass).
/// A `directory` argument: a non-empty string without NUL bytes.
pub fn directory_arg(env: &Env, value: &Unknown) -> Result<String> {
    let directory = js_string(env, value, "directory")?;
    if directory.is_empty() || directory.contains('\0') {
        let message = "directory must be a non-empty string without NUL bytes".to_owned();
        return Err(type_error(env, "ERR_INVALID_ARG_VALUE", message));
    }
    Ok(directory)
}

pub fn js_string(env: &Env, value: &Unknown, name: &str) -> Result<String> {
    if value.get_type()? != ValueType::String {
        return Err(type_error(
            env,
            "ERR_INVALID_ARG_TYPE",
            format!("{name} must be a string, got {}", describe(value)),
        ));
    }
    // SAFETY: the value was just checked to be a string.
    unsafe { value.cast() }
}

/// A string argument that names one of `choices` (as `word` writes each): not a string is a
/// `TypeError`, another string a `RangeError`; both say `{name} must be {expected}`.
pub fn choice<T: Copy>(
    env: &Env,
    value: &Unknown,
    name: &str,
    expected: &str,
    choices: &[T],
    word: impl Fn(T) -> &'static str,
) -> Result<T> {
    if value.get_type()? != ValueType::String {
        let message = format!("{name} must be {expected}, got {}", describe(value));
        return Err(type_error(env, "ERR_INVALID_ARG_TYPE", message));
    }
    // SAFETY: the value was just checked to be a string.
    let text: String = unsafe { value.cast()? };
    choices
        .iter()
        .copied()
        .find(|&c| word(c) == text)
        .ok_or_else(|| range_error(env, format!("{name} must be {expected}, got {text:?}")))
}

/// How a set of words reads in a message: `'a' or 'b'`, `'a', 'b' or 'c'`.
pub fn alternatives(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

fn is_nullish(value: &Unknown) -> bool {
    matches!(value.get_type(), Ok(ValueType::Undefined) | Ok(ValueType::Null))
}

/// `value` as a frozen JavaScript object: a copy that cannot be mistaken for live state.
pub fn frozen<'env, T: ToNapiValue>(env: &'env Env, value: T) -> Result<Object<'env>> {
    // SAFETY: `env` is this call's live environment, and the handle `to_napi_value` returns lives in its scope;
    // `Object::from_napi_value` only wraps it (every `T` given here converts to an object).
    let mut object: Object<'env> = unsafe { Object::from_napi_value(env.raw(), T::to_napi_value(env.raw(), value)?)? };
    object.freeze()?;
    Ok(object)
}

/// A plain options object being read: every key is checked against the allowed ones.
pub struct OptionsObject<'env> {
    env: &'env Env,
    object: Object<'env>,
    /// The name users see in messages, e.g. `options` or `options.thresholds`.
    name: String,
}

impl<'env> OptionsObject<'env> {
    /// `undefined` gives `None`; anything but a plain object (or an array) is a `TypeError`;
    /// keys not in `allowed` are a `TypeError` naming them.
    pub fn read(env: &'env Env, value: Option<Unknown<'env>>, name: &str, allowed: &[&str]) -> Result<Option<Self>> {
        let Some(value) = value else { return Ok(None) };
        if matches!(value.get_type()?, ValueType::Undefined) {
            return Ok(None);
        }
        if value.get_type()? != ValueType::Object || value.is_array()? {
            return Err(type_error(
                env,
                "ERR_INVALID_ARG_TYPE",
                format!("{name} must be an object, got {}", describe(&value)),
            ));
        }
        // SAFETY: the value was checked just above to be an object.
        let object: Object<'env> = unsafe { value.cast()? };
        let keys = object.get_property_names()?;
        let mut unknown = Vec::new();
        for i in 0..keys.get_array_length()? {
            let key: String = keys.get_element(i)?;
            if !allowed.contains(&key.as_str()) {
                unknown.push(key);
            }
        }
        if !unknown.is_empty() {
            return Err(type_error(
                env,
                "ERR_INVALID_ARG_VALUE",
                format!(
                    "{name} has unknown option{} {}; known options are {}",
                    if unknown.len() > 1 { "s" } else { "" },
                    unknown.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", "),
                    allowed.join(", ")
                ),
            ));
        }
        Ok(Some(OptionsObject { env, object, name: name.to_owned() }))
    }

    /// Like [`read`](Self::read), for an object that must be given: `undefined` is a
    /// `TypeError` too.
    pub fn required(env: &'env Env, value: Option<Unknown<'env>>, name: &str, allowed: &[&str]) -> Result<Self> {
        Self::read(env, value, name, allowed)?
            .ok_or_else(|| type_error(env, "ERR_INVALID_ARG_TYPE", format!("{name} must be an object, got undefined")))
    }

    /// Fields of a constructor's options object are named as users write them
    /// (`thresholds.gpu_memory`, `nvmlLibraryPath`); deeper ones with their path.
    pub fn field_name(&self, key: &str) -> String {
        if self.name == "options" {
            key.to_owned()
        } else {
            format!("{}.{key}", self.name)
        }
    }

    pub fn env(&self) -> &'env Env {
        self.env
    }

    /// The raw value of `key`, `None` when undefined.
    pub fn raw(&self, key: &str) -> Result<Option<Unknown<'env>>> {
        self.present(key)
    }

    fn present(&self, key: &str) -> Result<Option<Unknown<'env>>> {
        let value: Unknown<'env> = self.object.get_named_property(key)?;
        Ok((!matches!(value.get_type()?, ValueType::Undefined)).then_some(value))
    }

    /// A number option; `undefined` gives `None`. NaN is a `TypeError` (it is no number a
    /// user meant); ranges are the caller's to check.
    pub fn number(&self, key: &str) -> Result<Option<f64>> {
        let Some(value) = self.present(key)? else { return Ok(None) };
        // SAFETY: the cast runs only when the type check just before says it is a number.
        let number = (value.get_type()? == ValueType::Number).then(|| unsafe { value.cast::<f64>() }).transpose()?;
        match number {
            Some(n) if !n.is_nan() => Ok(Some(n)),
            _ => Err(type_error(
                self.env,
                "ERR_INVALID_ARG_TYPE",
                format!("{} must be a number, got {}", self.field_name(key), describe(&value)),
            )),
        }
    }

    /// A number option where `null` also means "not set".
    pub fn optional_number(&self, key: &str) -> Result<Option<f64>> {
        match self.present(key)? {
            Some(value) if value.get_type()? == ValueType::Null => Ok(None),
            _ => self.number(key),
        }
    }

    /// A number option that must be there.
    pub fn required_number(&self, key: &str) -> Result<f64> {
        self.number(key)?.ok_or_else(|| {
            type_error(
                self.env,
                "ERR_INVALID_ARG_TYPE",
                format!("{} must be a number, got undefined", self.field_name(key)),
            )
        })
    }

    /// A boolean option; `undefined` gives `None`.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>> {
        let Some(value) = self.present(key)? else { return Ok(None) };
        if value.get_type()? != ValueType::Boolean {
            return Err(type_error(
                self.env,
                "ERR_INVALID_ARG_TYPE",
                format!("{} must be a boolean, got {}", self.field_name(key), describe(&value)),
            ));
        }
        // SAFETY: the value was checked just above to be a boolean.
        Ok(Some(unsafe { value.cast::<bool>()? }))
    }

    /// A non-empty string option without NUL bytes (it may become a path).
    pub fn string(&self, key: &str) -> Result<Option<String>> {
        let Some(value) = self.present(key)? else { return Ok(None) };
        if value.get_type()? != ValueType::String {
            return Err(type_error(
                self.env,
                "ERR_INVALID_ARG_TYPE",
                format!("{} must be a string, got {}", self.field_name(key), describe(&value)),
            ));
        }
        // SAFETY: the value was checked just above to be a string.
        let text: String = unsafe { value.cast()? };
        if text.is_empty() || text.contains('\0') {
            return Err(type_error(
                self.env,
                "ERR_INVALID_ARG_VALUE",
                format!("{} must be a non-empty string without NUL bytes, got {text:?}", self.field_name(key)),
            ));
        }
        Ok(Some(text))
    }

    /// A nested options object.
    pub fn object(&self, key: &str, allowed: &[&str]) -> Result<Option<OptionsObject<'env>>> {
        let value: Unknown<'env> = self.object.get_named_property(key)?;
        if is_nullish(&value) && value.get_type()? == ValueType::Null {
            return Err(type_error(
                self.env,
                "ERR_INVALID_ARG_TYPE",
                format!("{} must be an object, got null", self.field_name(key)),
            ));
        }
        OptionsObject::read(self.env, Some(value), &self.field_name(key), allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::alternatives;

    #[test]
    fn alternatives_read_as_a_sentence() {
        assert_eq!(alternatives(&["quick", "full"]), "'quick' or 'full'");
        assert_eq!(alternatives(&["memory", "gpu", "process"]), "'memory', 'gpu' or 'process'");
        assert_eq!(alternatives(&["only"]), "'only'");
    }
}
