//! How a recovery's outcome reaches JavaScript: `lastOutcome`, and the error a failed run
//! rejects with.

use napi::bindgen_prelude::*;
use napi::{Env, JsValue};
use std::sync::Arc;

use crate::recovery::engine::{outcome_json, RecoveryOutcome, RunResult};

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
