//! How a recovery's outcome reaches JavaScript: `lastOutcome`, and the error a failed run
//! rejects with.

use napi::bindgen_prelude::*;
use napi::{Env, JsValue};
use napi_derive::napi;
use std::sync::Arc;

use crate::recovery::engine::{outcome_json, RecoveryOutcome, RunResult};

/// One step of a recovery run.
#[allow(dead_code)]
#[napi(object, use_nullable = true)]
pub struct RecoveryStep {
    pub name: String,
    #[napi(ts_type = "'ok' | 'skipped' | 'failed' | 'timed_out' | 'interrupted'")]
    pub status: String,
    #[napi(js_name = "duration_ms")]
    pub duration_ms: f64,
    pub error: Option<String>,
    /// What the step found or did, e.g. `{ released_bytes }` or a pressure check.
    #[napi(ts_type = "Record<string, unknown> | null")]
    pub detail: Option<serde_json::Value>,
}

/// The complete record of a recovery run (declared for the typings; built as JSON).
#[allow(dead_code)]
#[napi(object, js_name = "RecoveryOutcome", use_nullable = true)]
pub struct RecoveryOutcomeShape {
    pub id: String,
    #[napi(js_name = "type", ts_type = "'memory' | 'out_of_memory' | 'device_lost'")]
    pub kind: String,
    #[napi(js_name = "started_at")]
    pub started_at: f64,
    #[napi(js_name = "finished_at")]
    pub finished_at: f64,
    #[napi(ts_type = "'recovered' | 'not_recovered' | 'failed' | 'interrupted'")]
    pub result: String,
    pub steps: Vec<RecoveryStep>,
    /// Memory runs: the pressure check before the first step.
    #[napi(
        js_name = "pressure_before",
        ts_type = "{ gpu_pressure: boolean, system_pressure: boolean, gpu_ratio: number, system_ratio: number } | null | undefined"
    )]
    pub pressure_before: Option<serde_json::Value>,
    /// Memory runs: the verifying pressure check.
    #[napi(
        js_name = "pressure_after",
        ts_type = "{ gpu_pressure: boolean, system_pressure: boolean, gpu_ratio: number, system_ratio: number } | null | undefined"
    )]
    pub pressure_after: Option<serde_json::Value>,
    /// GPU runs: device memory or the known devices before the first step.
    #[napi(ts_type = "Record<string, unknown> | null | undefined")]
    pub before: Option<serde_json::Value>,
    /// GPU runs: what verification saw.
    #[napi(ts_type = "Record<string, unknown> | null | undefined")]
    pub after: Option<serde_json::Value>,
    #[napi(ts_type = "{ step: string, code: string, message: string } | null")]
    pub error: Option<serde_json::Value>,
    #[napi(js_name = "cleanup_error")]
    pub cleanup_error: Option<String>,
}

/// `lastOutcome`'s value.
pub fn outcome_value(outcome: Option<Arc<RecoveryOutcome>>) -> serde_json::Value {
    outcome.map(|o| outcome_json(&o)).unwrap_or(serde_json::Value::Null)
}

/// `true`/`false` for a run that finished; the step's error, with its code, for one that
/// failed. The error also carries `step`, `cleanupError` (when the emergency cleanup failed
/// too) and the whole `outcome`.
pub fn settle(env: &Env, outcome: Arc<RecoveryOutcome>) -> Result<bool> {
    match outcome.result {
        RunResult::Recovered => Ok(true),
        // Interrupted (the supervisor stopped): not recovered; `lastOutcome` says which.
        RunResult::NotRecovered | RunResult::Interrupted => Ok(false),
        RunResult::Failed => {
            let (code, step, message) = match &outcome.error {
                Some(e) => (e.code, e.step.clone(), e.message.clone()),
                None => ("ERR_STEP_FAILED", String::new(), "recovery failed".to_owned()),
            };
            let text = match &outcome.cleanup_error {
                Some(cleanup) => {
                    format!("recovery step {step} failed: {message}; emergency cleanup failed too: {cleanup}")
                }
                None => format!("recovery step {step} failed: {message}"),
            };
            let build = || -> Result<Error> {
                let mut error = env.create_error(Error::new(Status::GenericFailure, text.clone()))?;
                error.set_named_property("code", code)?;
                error.set_named_property("step", step.clone())?;
                error.set_named_property("cleanupError", outcome.cleanup_error.clone())?;
                error.set_named_property("outcome", super::json::JsonOut(outcome_json(&outcome)))?;
                Ok(Error::from(error.to_unknown()))
            };
            Err(build().unwrap_or_else(|e| e))
        }
    }
}
