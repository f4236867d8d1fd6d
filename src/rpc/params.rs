//! Params validation for the three tools, by name (`{"checkType":"full"}`) or by position
//! (`["full"]`). Anything the schema does not allow — wrong type, unknown enum value, missing
//! required field, unknown extra field, too many positional values — is -32602.

use super::error::{snippet, MethodError};
use super::{AllocatorStatsParams, CheckType, RecoveryType};
use serde_json::Value;

/// Largest integer a float-encoded number may carry (JS `Number.MAX_SAFE_INTEGER`): a binding
/// that converts JS numbers may hand over `5.0` for `5`, which JSON Schema counts as an integer.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Maps by-name or by-position params onto `fields`, in order; a field not given is `None`.
fn fields<'a, const N: usize>(
    method: &str,
    params: Option<&'a Value>,
    fields: [&str; N],
) -> Result<[Option<&'a Value>; N], MethodError> {
    let mut slots = [None; N];
    match params {
        None => {}
        Some(Value::Object(object)) => {
            if let Some(unknown) = object.keys().find(|key| !fields.contains(&key.as_str())) {
                return Err(MethodError::invalid_params(format!("unknown field {} for {method}", snippet(unknown))));
            }
            for (slot, name) in slots.iter_mut().zip(fields) {
                *slot = object.get(name);
            }
        }
        Some(Value::Array(values)) => {
            if values.len() > N {
                return Err(MethodError::invalid_params(format!(
                    "{method} takes at most {N} positional params, got {}",
                    values.len()
                )));
            }
            for (slot, value) in slots.iter_mut().zip(values) {
                *slot = Some(value);
            }
        }
        // The dispatcher only passes arrays and objects; anything else is a caller bug here.
        Some(_) => return Err(MethodError::invalid_params("params must be an array or an object")),
    }
    Ok(slots)
}

fn enum_value<T: Copy>(
    name: &str,
    value: &Value,
    parse: fn(&str) -> Option<T>,
    all: &[T],
    as_str: fn(T) -> &'static str,
) -> Result<T, MethodError> {
    value.as_str().and_then(parse).ok_or_else(|| {
        let allowed: Vec<String> = all.iter().map(|v| format!("{:?}", as_str(*v))).collect();
        MethodError::invalid_params(format!("{name} must be one of {}", allowed.join(", ")))
    })
}

/// A JSON integer in `min..=max`; integral floats count (see `MAX_SAFE_INTEGER`).
fn integer(name: &str, value: &Value, min: u64, max: u64) -> Result<u64, MethodError> {
    let number = match value {
        Value::Number(number) => number.as_u64().or_else(|| {
            number.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER).contains(f)).map(|f| f as u64)
        }),
        _ => None,
    };
    number
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| MethodError::invalid_params(format!("{name} must be an integer from {min} to {max}")))
}

pub(crate) fn check_type(method: &str, params: Option<&Value>) -> Result<CheckType, MethodError> {
    let [check_type] = fields(method, params, ["checkType"])?;
    match check_type {
        None => Ok(CheckType::default()),
        Some(value) => enum_value("checkType", value, CheckType::parse, &CheckType::ALL, CheckType::as_str),
    }
}

pub(crate) fn recovery_type(method: &str, params: Option<&Value>) -> Result<RecoveryType, MethodError> {
    let [error_type] = fields(method, params, ["errorType"])?;
    let value = error_type.ok_or_else(|| MethodError::invalid_params("errorType is required"))?;
    enum_value("errorType", value, RecoveryType::parse, &RecoveryType::ALL, RecoveryType::as_str)
}

pub(crate) fn allocator_stats(method: &str, params: Option<&Value>) -> Result<AllocatorStatsParams, MethodError> {
    let [device, allocated, reserved, pid] = fields(method, params, ["device", "allocated", "reserved", "pid"])?;
    let required = |name: &str, value: Option<&Value>, max: u64| match value {
        None => Err(MethodError::invalid_params(format!("{name} is required"))),
        Some(value) => integer(name, value, 0, max),
    };
    Ok(AllocatorStatsParams {
        device: required("device", device, u32::MAX.into())? as u32,
        allocated: required("allocated", allocated, u64::MAX)?,
        reserved: required("reserved", reserved, u64::MAX)?,
        pid: pid.map(|value| integer("pid", value, 1, i32::MAX as u64).map(|n| n as u32)).transpose()?,
    })
}
