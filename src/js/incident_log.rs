//! `IncidentLog`: every incident on disk before `record` resolves.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown};
use napi_derive::napi;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

use super::args::range_error;
use super::input::{js_fields, Count, Fields, Since, Text};
use super::json::{JsonOut, JsonShape};
use super::task::coded_error;
use crate::durable::closable::Closable;
use crate::durable::defaults::MAX_INCIDENT_KIND_BYTES;
use crate::durable::manager::{off_thread, problem_json};
use crate::durable::{IncidentLog as Core, IncidentLogOptions, Pending, RateLimit, ReadFilter, RecordOutcome, Storage};
use crate::incident::IncidentSink;
use crate::incident::{Incident, IncidentSeverity};
use crate::policy::thresholds::{ThresholdSpec, MAX_INTERVAL_MS, MAX_SAFE_INTEGER};

const SEGMENT_BYTES: ThresholdSpec = ThresholdSpec {
    name: "segmentBytes",
    default: 1_048_576.0,
    min: 4096.0,
    min_inclusive: true,
    max: 1_073_741_824.0,
    integer: true,
};
const MAX_SEGMENTS: ThresholdSpec =
    ThresholdSpec { name: "maxSegments", default: 16.0, min: 1.0, min_inclusive: true, max: 100_000.0, integer: true };
const MAX_BYTES: ThresholdSpec = ThresholdSpec {
    name: "maxBytes",
    default: 67_108_864.0,
    min: 4096.0,
    min_inclusive: true,
    max: MAX_SAFE_INTEGER,
    integer: true,
};
const RATE_MAX: ThresholdSpec = ThresholdSpec {
    name: "rateLimit.max",
    default: 20.0,
    min: 1.0,
    min_inclusive: true,
    max: 4_294_967_295.0,
    integer: true,
};
const RATE_WINDOW: ThresholdSpec = ThresholdSpec {
    name: "rateLimit.windowMs",
    default: 60_000.0,
    min: 1.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};

/// Options of `new IncidentLog(options)`.
#[napi(object, js_name = "IncidentLogOptions", object_from_js = false, object_to_js = false)]
pub struct IncidentLogInput {
    /// Created 0700; refused if a symlink, not ours, or open to others.
    pub directory: String,
    /// A segment is closed once it holds this many bytes (default 1 MiB).
    pub segment_bytes: Option<f64>,
    /// At most this many segments are kept (default 16) …
    pub max_segments: Option<f64>,
    /// … and at most this many bytes in all (default 64 MiB); the oldest go first.
    pub max_bytes: Option<f64>,
    /// Per kind, at most `max` records per `windowMs` (default 20 per 60000).
    pub rate_limit: Option<RateLimitInput>,
}

js_fields!(IncidentLogInput {
    directory = "directory",
    segment_bytes = "segmentBytes" check SEGMENT_BYTES,
    max_segments = "maxSegments" check MAX_SEGMENTS,
    max_bytes = "maxBytes" check MAX_BYTES,
    rate_limit = "rateLimit",
});

/// `rateLimit`: per incident kind, at most `max` records per `windowMs`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct RateLimitInput {
    pub max: Option<f64>,
    pub window_ms: Option<f64>,
}

js_fields!(RateLimitInput { max = "max" check RATE_MAX, window_ms = "windowMs" check RATE_WINDOW });

/// `record`'s answer: where the incident is, or that rate limiting held it back.
#[napi(object, use_nullable = true)]
pub struct RecordResult {
    /// `null` when rate limiting held it back (a summary is written when the window ends).
    pub seq: Option<f64>,
    pub timestamp: Option<f64>,
    pub suppressed: bool,
}

/// The log, until `close` releases its directory. It is the incident sink that the
/// recoveries, the checkpoint manager and the supervisor write to.
pub struct ClosableLog(Closable<Core>);

impl ClosableLog {
    /// Queues `incident` on the JS thread without blocking it (once `close` waits for
    /// the directory, the log counts as closed); the writer thread commits it.
    fn queue_record(&self, incident: Incident) -> crate::durable::Result<Pending<RecordOutcome>> {
        self.0.try_with(|log| log.queue_record(incident))
    }
}

impl IncidentSink for ClosableLog {
    fn record(&self, incident: Incident) -> std::result::Result<u64, String> {
        self.0
            .with(|log| Ok(IncidentSink::record(log, incident)))
            .unwrap_or_else(|e| Err(format!("{}: {}", e.code, e.message)))
    }
}

/// Append-only JSON Lines incidents in size-bounded segments, each record durable before
/// `record` resolves; per-kind rate limiting. One process owns a directory.
#[napi]
pub struct IncidentLog {
    pub(crate) core: Arc<ClosableLog>,
    /// Problems found when opening (a torn tail repaired, a damaged line).
    problems: Value,
}

impl super::input::Attachable for IncidentLog {
    const JS_NAME: &'static str = "IncidentLog";
    type Core = Arc<ClosableLog>;
    fn core(&self) -> Self::Core {
        self.core.clone()
    }
}

#[napi]
impl IncidentLog {
    /// Opens (creating it 0700) the directory and repairs a torn tail; synchronously, once.
    /// Throws `ERR_INCIDENT_LOG_LOCKED` when another process owns it, `ERR_UNSAFE_DIRECTORY`
    /// when it is a symlink, not ours, or open to others.
    #[napi(constructor, ts_args_type = "options: IncidentLogOptions")]
    pub fn new(env: Env, this: This<Unknown>, options: Option<Unknown>) -> Result<Self> {
        super::task::guarded(&env, "IncidentLog.constructor", || {
            super::receiver::require_new::<Self>(&env, &this, "IncidentLog")?;
            let options = IncidentLogInput::required(&env, options, "options")?;
            let mut settings = IncidentLogOptions::default();
            if let Some(v) = options.segment_bytes {
                settings.segment_bytes = v as u64;
            }
            if let Some(v) = options.max_segments {
                settings.max_segments = v as usize;
            }
            if let Some(v) = options.max_bytes {
                settings.max_bytes = v as u64;
            }
            if let Some(rate) = options.rate_limit {
                let max = rate.max.map_or(settings.rate_limit.max, |v| v as u32);
                let window = rate.window_ms.map_or(settings.rate_limit.window_ms, |v| v as u64);
                settings.rate_limit = RateLimit { max, window_ms: window };
            }
            let directory = options.directory;
            let (core, problems) = Core::open(&PathBuf::from(directory), settings, Storage::new())
                .map_err(|e| coded_error(&env, e.code, &e.message))?;
            let problems = Value::Array(problems.iter().map(problem_json).collect());
            Ok(IncidentLog { core: Arc::new(ClosableLog(Closable::new("the incident log", core))), problems })
        })
    }

    /// What opening found and repaired: `[{ kind, file, offset, reason, set_aside_as }]`.
    #[napi(
        getter,
        ts_return_type = "Array<{ kind: string, file: string, offset: number, reason: string, set_aside_as: string | null }>"
    )]
    pub fn get_problems(&self, env: Env) -> Result<JsonOut> {
        super::task::guarded(&env, "IncidentLog.problems", || Ok(JsonOut(self.problems.clone())))
    }

    /// Writes one incident; resolves once it is on disk.
    #[napi(ts_args_type = "incident: IncidentInput", ts_return_type = "Promise<RecordResult>")]
    pub fn record<'env>(&self, env: &'env Env, incident: Unknown) -> Result<PromiseRaw<'env, RecordResult>> {
        super::task::guarded(env, "IncidentLog.record", || {
            let incident = read_incident(env, incident)?;
            let pending = self.core.queue_record(incident);
            env.spawn_future_with_callback(
                async move {
                    Ok(match pending {
                        Ok(pending) => pending.await,
                        Err(e) => Err(e),
                    })
                },
                |env, outcome| match outcome {
                    Ok(RecordOutcome::Written { seq, timestamp_ms }) => Ok(RecordResult {
                        seq: Some(seq as f64),
                        timestamp: Some(timestamp_ms as f64),
                        suppressed: false,
                    }),
                    Ok(RecordOutcome::RateLimited) => Ok(RecordResult { seq: None, timestamp: None, suppressed: true }),
                    Err(e) => Err(coded_error(env, e.code, &e.message)),
                },
            )
        })
    }

    /// Releases the directory for another process; later calls reject with `ERR_CLOSED`,
    /// and recoveries or supervisors still attached report the failure. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        super::task::guarded(env, "IncidentLog.close", || {
            let core = self.core.clone();
            env.spawn_future_with_callback(
                async move {
                    Ok(off_thread(move || {
                        core.0.close();
                        Ok(())
                    })
                    .await)
                },
                |env, closed| closed.map_err(|e| coded_error(env, e.code, &e.message)),
            )
        })
    }

    /// Reads records, oldest first: `sinceSeq` and `since` (ms, or text such as `'12h'`) are inclusive, `kinds`
    /// filters, `limit` caps the count.
    #[napi(ts_args_type = "filter?: ReadFilterInput", ts_return_type = "Promise<IncidentRecord[]>")]
    pub fn read<'env>(&self, env: &'env Env, filter: Option<Unknown>) -> Result<PromiseRaw<'env, JsonShape>> {
        super::task::guarded(env, "IncidentLog.read", || {
            let filter = read_filter(env, filter)?;
            let core = self.core.clone();
            env.spawn_future_with_callback(
                async move { Ok(off_thread(move || core.0.with(|log| log.read(&filter))).await) },
                |env, result| match result {
                    Ok(read) => Ok(JsonShape::of(&read.records)),
                    Err(e) => Err(coded_error(env, e.code, &e.message)),
                },
            )
        })
    }
}

/// Reads the incident log in `directory` without opening it: no lock is taken and nothing
/// is written, so it works while a service has the log open (an `IncidentLog` there
/// would be refused with `ERR_INCIDENT_LOG_LOCKED`). The same records as `read`; a line
/// being appended is not there yet. `ERR_NOT_FOUND` when the directory does not exist.
/// Read off the JS thread.
#[cfg_attr(test, allow(dead_code))]
#[napi(ts_args_type = "directory: string, filter?: ReadFilterInput", ts_return_type = "Promise<IncidentRecord[]>")]
pub fn read_incidents<'env>(
    env: &'env Env,
    directory: Unknown,
    filter: Option<Unknown>,
) -> Result<PromiseRaw<'env, JsonShape>> {
    super::task::guarded(env, "readIncidents", || {
        let directory = std::path::PathBuf::from(super::args::directory_arg(env, &directory)?);
        let filter = read_filter(env, filter)?;
        super::task::spawn_blocking_settled(env, move || {
            Ok(JsonShape::of(&Core::read_unlocked(&directory, &filter)?.records))
        })
    })
}

/// One incident to record, as `record` takes it.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct IncidentInput {
    /// A short machine-readable kind, e.g. `recovery_started` (at most 128 bytes).
    pub kind: String,
    #[napi(ts_type = "'info' | 'warn' | 'error' | 'critical'")]
    pub severity: Option<IncidentSeverity>,
    #[napi(ts_type = "string")]
    pub message: Text,
    #[napi(ts_type = "unknown")]
    pub details: Option<Value>,
}

js_fields!(IncidentInput { kind = "kind", severity = "severity", message = "message", details = "details" });

fn read_incident(env: &Env, value: Unknown) -> Result<Incident> {
    let IncidentInput { kind, severity, message: Text(message), details } =
        IncidentInput::required(env, Some(value), "incident")?;
    if kind.len() > MAX_INCIDENT_KIND_BYTES {
        let message = format!("incident.kind must be at most {MAX_INCIDENT_KIND_BYTES} bytes, got {}", kind.len());
        return Err(range_error(env, message));
    }
    let severity = severity.unwrap_or(IncidentSeverity::Info);
    Ok(Incident { kind, severity, message, details: details.unwrap_or(Value::Null) })
}

/// Which records `read` returns.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ReadFilterInput {
    /// From this sequence number on (inclusive).
    #[napi(ts_type = "number")]
    pub since_seq: Option<Count>,
    /// From this time on (inclusive): ms since the epoch, or `'30m'`, `'12h'`, `'7d'` (that
    /// long ago), or an ISO 8601 date or time (local time unless it gives its zone).
    #[napi(ts_type = "number | string")]
    pub since: Option<Since>,
    /// Only these kinds.
    pub kinds: Option<Vec<String>>,
    /// At most this many records.
    #[napi(ts_type = "number")]
    pub limit: Option<Count>,
}

js_fields!(ReadFilterInput { since_seq = "sinceSeq", since = "since", kinds = "kinds", limit = "limit" });

fn read_filter(env: &Env, value: Option<Unknown>) -> Result<ReadFilter> {
    let mut filter = ReadFilter::default();
    if let Some(given) = ReadFilterInput::read(env, value, "filter")? {
        filter.since_seq = given.since_seq.map(|Count(n)| n);
        filter.since_ms = given.since.map(|Since(ms)| ms);
        filter.limit = given.limit.map(|Count(n)| n as usize);
        filter.kinds = given.kinds;
    }
    Ok(filter)
}
