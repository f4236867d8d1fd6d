//! The JavaScript binding: the only place `#[napi]` appears. It converts and validates;
//! all behaviour lives in the plain-Rust core.

mod args;
mod checkpoint_manager;
mod durable;
mod gpu_health_monitor;
mod gpu_recovery;
mod health_supervisor;
mod hooks;
mod incident_log;
mod json_rpc;
mod memory_monitor;
mod memory_recovery;
mod promise;
mod recovery_outcome;
mod task;

use napi::bindgen_prelude::*;

/// A JavaScript value as JSON, as `JSON.stringify` would keep it; `name` is used in the
/// `TypeError` for what cannot be (functions, symbols, bigints, cycles).
pub(crate) fn json_value(env: &napi::Env, value: napi::Unknown, name: &str) -> Result<serde_json::Value> {
    unsafe { serde_json::Value::from_napi_value(env.raw(), napi::JsValue::raw(&value)) }.map_err(|e| {
        args::type_error(env, "ERR_INVALID_ARG_TYPE", format!("{name} must be JSON-serialisable data: {}", e.reason))
    })
}
