//! `readHistory(directory, options?)`: the metrics history a `HealthSupervisor` records
//! (`historyDir`), as JSON, read without the directory's lock while it is written.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown};
use napi_derive::napi;
use std::path::PathBuf;

use super::args::directory_arg;
use super::input::{js_fields, Fields};
use super::json::JsonOut;
use super::task::spawn_blocking_settled;
use crate::history::HistoryPolicy;
use crate::policy::thresholds::HISTORY_SINCE_MS;

/// Options of `readHistory`.
#[cfg_attr(test, allow(dead_code))]
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ReadHistoryOptions {
    /// Only buckets that end after this time, ms since the Unix epoch (default 0: all).
    pub since: Option<f64>,
}

js_fields!(ReadHistoryOptions { since = "since" check HISTORY_SINCE_MS });

/// Reads the metrics history in `directory` (a `HealthSupervisor`'s `historyDir`), also
/// while the supervisor records into it: no lock is taken, a record being appended is
/// not there yet and a damaged one is skipped (`skipped_records`). `ERR_NOT_FOUND` when
/// the directory does not exist, `ERR_UNSAFE_DIRECTORY` as for every state directory.
/// Read off the JS thread.
#[cfg_attr(test, allow(dead_code))]
#[napi(ts_args_type = "directory: string, options?: ReadHistoryOptions", ts_return_type = "Promise<MetricsHistory>")]
pub fn read_history<'env>(
    env: &'env Env,
    directory: Unknown,
    options: Option<Unknown>,
) -> Result<PromiseRaw<'env, JsonOut>> {
    super::task::guarded(env, "readHistory", || {
        let directory = PathBuf::from(directory_arg(env, &directory)?);
        let since = ReadHistoryOptions::read(env, options, "options")?.and_then(|o| o.since).unwrap_or(0.0);
        spawn_blocking_settled(env, move || {
            let readout = crate::history::read_history(&directory, since as u64, &HistoryPolicy::default())?;
            Ok(JsonOut(crate::shapes::history_json(&readout)))
        })
    })
}
