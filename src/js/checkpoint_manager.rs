//! `CheckpointManager`: durable checkpoints and the operation journal, and the restore flow.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown, ValueType};
use napi_derive::napi;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use super::args::{describe, range_error, range_violation, type_error, OptionsObject};
use super::gpu_health_monitor::{GpuHealth, GpuHealthMonitor};
use super::hooks::{call_data_hook, read_data_hook, read_instance, DataHook};
use super::incident_log::{problem_json, IncidentLog};
use super::json::JsonOut;
use super::memory_monitor::{MemoryMetrics, MemoryMonitor};
use super::promise_batch::{PromiseBatch, Settle};
use super::task::coded_error;
use crate::durable::defaults::{DEFAULT_CHECKPOINT_MAX_BYTES, DEFAULT_CHECKPOINT_RETAIN, MAX_OPERATION_ID_BYTES};
use crate::durable::{
    open_state_dir, Checkpoint, CheckpointStore, DurableError, Journal, JournalOptions, SkippedFile, Storage,
    ERR_CHECKPOINT_LOCKED, ERR_CORRUPT, ERR_NOT_FOUND,
};
use crate::incident::{Incident, IncidentCounts, IncidentKind, IncidentSeverity, IncidentSink};
use crate::monitors::gpu_health::GpuHealthMonitor as GpuCore;
use crate::monitors::memory::MemoryMonitor as MemoryCore;
use crate::policy::thresholds::{ThresholdSpec, MAX_SAFE_INTEGER, STEP_TIMEOUT_MS};
use crate::supervisor::{CheckpointFuture, Checkpointer};

const OPTION_NAMES: &[&str] = &[
    "directory",
    "retain",
    "maxBytes",
    "memoryMonitor",
    "gpuMonitor",
    "captureState",
    "cleanCurrentState",
    "restoreMemoryState",
    "restoreOperations",
    "incidentLog",
    "stepTimeoutMs",
];
const RETAIN: ThresholdSpec =
    ThresholdSpec { name: "retain", default: 3.0, min: 2.0, min_inclusive: true, max: 1000.0, integer: true };
const MAX_BYTES: ThresholdSpec = ThresholdSpec {
    name: "maxBytes",
    default: 67_108_864.0,
    min: 1024.0,
    min_inclusive: true,
    max: MAX_SAFE_INTEGER,
    integer: true,
};

/// What the manager does, off the JS thread; the JS class only converts.
pub struct ManagerCore {
    /// `None` once closed: dropping the store and the journal releases the directory lock.
    files: RwLock<Option<Files>>,
    memory: Option<Arc<MemoryCore>>,
    gpu: Option<Arc<GpuCore>>,
    capture_state: Option<Arc<DataHook>>,
    clean_current_state: Option<Arc<DataHook>>,
    restore_memory_state: Option<Arc<DataHook>>,
    restore_operations: Option<Arc<DataHook>>,
    incidents: Option<Arc<super::incident_log::ClosableLog>>,
    incident_counts: IncidentCounts,
    step_timeout: Duration,
}

pub struct Files {
    store: CheckpointStore,
    journal: Journal,
}

pub const ERR_CLOSED: &str = "ERR_CLOSED";

type Failure = (&'static str, String);

fn failed(e: DurableError) -> Failure {
    (e.code, e.message)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::result::Result<T, Failure> + Send + 'static,
) -> std::result::Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ("ERR_INTERNAL", format!("internal error in hpc-health: {e}")))?
}

struct FilesGuard<'a>(RwLockReadGuard<'a, Option<Files>>);

impl std::ops::Deref for FilesGuard<'_> {
    type Target = Files;
    fn deref(&self) -> &Files {
        self.0.as_ref().expect("checked open when taken")
    }
}

/// A checkpoint file's payload as users see it, with its id and sequence number.
fn checkpoint_json(checkpoint: &Checkpoint) -> std::result::Result<Value, Failure> {
    let mut payload: Value = serde_json::from_slice(&checkpoint.payload)
        .map_err(|e| (ERR_CORRUPT, format!("{}: {e}", checkpoint.meta.id)))?;
    // Validated before any hook sees it: a checkpoint this package wrote has exactly this shape.
    let shape_ok = payload.as_object().is_some_and(|o| {
        o.get("timestamp").is_some_and(Value::is_number)
            && o.get("active_operations").is_some_and(Value::is_array)
            && ["memory_state", "gpu_state", "state"].iter().all(|k| o.contains_key(*k))
    });
    if !shape_ok {
        return Err((ERR_CORRUPT, format!("{} does not hold a checkpoint of this package", checkpoint.meta.id)));
    }
    payload["id"] = json!(checkpoint.meta.id);
    payload["seq"] = json!(checkpoint.meta.seq);
    Ok(payload)
}

fn skipped_json(skipped: &[SkippedFile]) -> Value {
    Value::Array(
        skipped.iter().map(|s| json!({ "id": s.id, "reason": s.reason, "set_aside_as": s.set_aside_as })).collect(),
    )
}

fn operations_json(journal: &Journal) -> Value {
    Value::Array(
        journal
            .active_operations()
            .into_iter()
            .map(|o| json!({ "id": o.id, "started_at": o.started_at_ms, "details": o.details }))
            .collect(),
    )
}

impl ManagerCore {
    /// The open files, held for the whole operation so that `close` waits for it.
    fn files(&self) -> std::result::Result<FilesGuard<'_>, Failure> {
        let guard = self.files.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            return Err((ERR_CLOSED, "the checkpoint manager is closed".to_owned()));
        }
        Ok(FilesGuard(guard))
    }

    /// The open files, taken on the JS thread without blocking it: once `close` waits
    /// for the directory, the manager counts as closed.
    fn files_now(&self) -> std::result::Result<FilesGuard<'_>, Failure> {
        let guard = match self.files.try_read() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        match guard {
            Some(guard) if guard.is_some() => Ok(FilesGuard(guard)),
            _ => Err((ERR_CLOSED, "the checkpoint manager is closed".to_owned())),
        }
    }

    /// Waits for operations in flight, then releases the directory. Idempotent.
    pub fn close(&self) {
        *self.files.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn incident(&self, kind: IncidentKind, severity: IncidentSeverity, message: String, details: Value) {
        self.incident_counts.add(kind);
        if let Some(log) = &self.incidents {
            let _ = IncidentSink::record(log.as_ref(), Incident::new(kind, severity, message, details));
        }
    }

    /// The incidents this manager raised, by kind (for the supervisor's metrics).
    pub fn incident_counts(&self) -> std::collections::BTreeMap<IncidentKind, u64> {
        self.incident_counts.snapshot()
    }

    fn report_skipped(&self, skipped: &[SkippedFile]) {
        for file in skipped {
            self.incident(
                IncidentKind::CheckpointCorrupt,
                IncidentSeverity::Error,
                format!("checkpoint {} skipped: {}", file.id, file.reason),
                json!({ "id": file.id, "reason": file.reason, "set_aside_as": file.set_aside_as }),
            );
        }
    }

    /// Captures and writes a checkpoint; resolves once it is durable.
    pub async fn create(self: Arc<Self>) -> std::result::Result<Value, Failure> {
        let state = match &self.capture_state {
            Some(hook) => call_data_hook(hook, Value::Null, self.step_timeout, "captureState").await?,
            None => Value::Null,
        };
        blocking(move || {
            let files = self.files()?;
            let memory_state = match &self.memory {
                Some(m) => serde_json::to_value(MemoryMetrics::from(m.get_memory_metrics())).unwrap_or(Value::Null),
                None => json!({ "absent": "no memoryMonitor was given" }),
            };
            let gpu_state = match &self.gpu {
                Some(g) => serde_json::to_value(GpuHealth::from(g.check_gpu_health())).unwrap_or(Value::Null),
                None => json!({ "absent": "no gpuMonitor was given" }),
            };
            let payload = json!({
                "timestamp": crate::sampling::unix_time_ms(),
                "memory_state": memory_state,
                "active_operations": operations_json(&files.journal),
                "gpu_state": gpu_state,
                "state": state,
            });
            let written = files.store.write_value(&payload);
            let meta = match written {
                Ok(meta) => meta,
                Err(e) => {
                    self.incident(
                        IncidentKind::CheckpointFailed,
                        IncidentSeverity::Error,
                        format!("checkpoint not written: {}", e.message),
                        json!({ "code": e.code }),
                    );
                    return Err(failed(e));
                }
            };
            // The checkpoint holds the active operations; the journal can start over from them.
            if let Err(e) = files.journal.compact() {
                self.incident(
                    IncidentKind::JournalCompactionFailed,
                    IncidentSeverity::Warn,
                    e.message.clone(),
                    json!({ "code": e.code }),
                );
            }
            self.incident(
                IncidentKind::CheckpointCreated,
                IncidentSeverity::Info,
                format!("{} written", meta.id),
                json!({ "id": meta.id, "seq": meta.seq, "bytes": meta.bytes }),
            );
            let mut checkpoint = payload;
            checkpoint["id"] = json!(meta.id);
            checkpoint["seq"] = json!(meta.seq);
            Ok(checkpoint)
        })
        .await
    }

    /// The newest valid checkpoint (`id: None`) or the one named, validated; plus what was skipped.
    fn load(&self, id: Option<String>) -> std::result::Result<(Option<Value>, Vec<SkippedFile>), Failure> {
        let files = self.files()?;
        match id {
            Some(id) => {
                let checkpoint = files.store.load(&id).map_err(failed)?;
                Ok((Some(checkpoint_json(&checkpoint)?), Vec::new()))
            }
            None => {
                let latest = files.store.latest_valid().map_err(failed)?;
                self.report_skipped(&latest.skipped);
                let checkpoint = latest.checkpoint.as_ref().map(checkpoint_json).transpose()?;
                Ok((checkpoint, latest.skipped))
            }
        }
    }

    pub async fn restore(self: Arc<Self>, id: Option<String>) -> std::result::Result<Value, Failure> {
        let this = self.clone();
        let (checkpoint, skipped, operations) = blocking(move || {
            let (checkpoint, skipped) = this.load(id)?;
            let checkpoint = checkpoint.ok_or((ERR_NOT_FOUND, "no valid checkpoint to restore".to_owned()))?;
            // Active when the process died: the journal, which the last checkpoint compacted.
            let operations = operations_json(&this.files()?.journal);
            Ok((checkpoint, skipped, operations))
        })
        .await?;
        for (hook, arg, name) in [
            (&self.clean_current_state, Value::Null, "cleanCurrentState"),
            (&self.restore_memory_state, checkpoint["memory_state"].clone(), "restoreMemoryState"),
            (&self.restore_operations, operations.clone(), "restoreOperations"),
        ] {
            if let Some(hook) = hook {
                call_data_hook(hook, arg, self.step_timeout, name).await?;
            }
        }
        let this = self.clone();
        let id = checkpoint["id"].clone();
        let _ = blocking(move || {
            this.incident(
                IncidentKind::CheckpointRestored,
                IncidentSeverity::Info,
                format!("restored {id}"),
                json!({ "id": id }),
            );
            Ok(())
        })
        .await;
        Ok(json!({ "checkpoint": checkpoint, "operations": operations, "skipped": skipped_json(&skipped) }))
    }
}

/// The manager as the supervisor's periodic checkpointer.
pub struct PeriodicCheckpoints(pub Arc<ManagerCore>);

impl Checkpointer for PeriodicCheckpoints {
    fn checkpoint(&self) -> CheckpointFuture {
        let core = self.0.clone();
        Box::pin(async move { core.create().await.map_err(|(code, message)| format!("{code}: {message}")) })
    }

    fn incident_counts(&self) -> std::collections::BTreeMap<IncidentKind, u64> {
        self.0.incident_counts()
    }
}

/// Durable checkpoints (newest valid wins) and an operation journal, in one directory that
/// one process owns.
#[napi]
pub struct CheckpointManager {
    pub(crate) core: Arc<ManagerCore>,
    opened: Value,
    /// Settles the journal's promises a batch at a time (made on first use).
    journal_promises: std::cell::OnceCell<Arc<PromiseBatch>>,
}

impl CheckpointManager {
    /// A promise for a journal record, settled with the others of its batch.
    fn journal_promise<'env>(&self, env: &'env Env) -> Result<(PromiseRaw<'env, ()>, Settle)> {
        let batch = match self.journal_promises.get() {
            Some(batch) => batch,
            None => {
                let batch = PromiseBatch::new(env)?;
                self.journal_promises.get_or_init(|| batch)
            }
        };
        batch.promise(env)
    }
}

fn read_id(env: &Env, value: &Unknown, name: &str) -> Result<String> {
    if value.get_type()? != ValueType::String {
        return Err(type_error(
            env,
            "ERR_INVALID_ARG_TYPE",
            format!("{name} must be a string, got {}", describe(value)),
        ));
    }
    let id: String = unsafe { value.cast()? };
    if id.is_empty() || id.len() > MAX_OPERATION_ID_BYTES {
        return Err(range_error(
            env,
            format!("{name} must be 1 to {MAX_OPERATION_ID_BYTES} bytes long, got {}", id.len()),
        ));
    }
    Ok(id)
}

/// Runs `work` on the async runtime; a failure rejects with its code.
fn spawn_settled<'env, T: ToNapiValue + Send + 'static>(
    env: &'env Env,
    work: impl std::future::Future<Output = std::result::Result<T, Failure>> + Send + 'static,
) -> Result<PromiseRaw<'env, T>> {
    env.spawn_future_with_callback(async move { Ok(work.await) }, |env, result| {
        result.map_err(|(code, message)| coded_error(env, code, &message))
    })
}

/// Like [`spawn_settled`], for work that resolves JSON data.
fn spawn_json<'env>(
    env: &'env Env,
    work: impl std::future::Future<Output = std::result::Result<Value, Failure>> + Send + 'static,
) -> Result<PromiseRaw<'env, JsonOut>> {
    spawn_settled(env, async move { work.await.map(JsonOut) })
}

#[napi]
impl CheckpointManager {
    /// Opens (creating it 0700) the directory, removes leftover temporary files, replays the
    /// journal; synchronously, once. Throws `ERR_CHECKPOINT_LOCKED` when another process
    /// owns it and `ERR_UNSAFE_DIRECTORY` when it is a symlink, not ours, or open to others.
    #[napi(constructor, ts_args_type = "options: CheckpointManagerOptions")]
    pub fn new(env: Env, this: This<Unknown>, options: Option<Unknown>) -> Result<Self> {
        super::task::guarded(&env, "CheckpointManager.constructor", || {
            super::receiver::require_new::<Self>(&env, &this, "CheckpointManager")?;
            let o = OptionsObject::required(&env, options, "options", OPTION_NAMES)?;
            let directory = o.string("directory")?.ok_or_else(|| {
                type_error(&env, "ERR_INVALID_ARG_TYPE", "directory must be a string, got undefined".into())
            })?;
            let retain =
                o.number("retain")?.map(|v| RETAIN.check(v).map_err(|e| range_violation(&env, e))).transpose()?;
            let max_bytes =
                o.number("maxBytes")?.map(|v| MAX_BYTES.check(v).map_err(|e| range_violation(&env, e))).transpose()?;
            let step_timeout = o
                .number(STEP_TIMEOUT_MS.name)?
                .map(|v| STEP_TIMEOUT_MS.check(v).map_err(|e| range_violation(&env, e)))
                .transpose()?;
            let memory = o
                .raw("memoryMonitor")?
                .map(|v| {
                    read_instance(&env, Some(v), "memoryMonitor", "MemoryMonitor", |m: &MemoryMonitor| m.core.clone())
                })
                .transpose()?;
            let gpu = o
                .raw("gpuMonitor")?
                .map(|v| {
                    read_instance(&env, Some(v), "gpuMonitor", "GPUHealthMonitor", |m: &GpuHealthMonitor| {
                        m.core.clone()
                    })
                })
                .transpose()?;
            let incidents = o
                .raw("incidentLog")?
                .map(|v| read_instance(&env, Some(v), "incidentLog", "IncidentLog", |l: &IncidentLog| l.core.clone()))
                .transpose()?;
            let capture_state = read_data_hook(&env, &o, "captureState")?;
            let clean_current_state = read_data_hook(&env, &o, "cleanCurrentState")?;
            let restore_memory_state = read_data_hook(&env, &o, "restoreMemoryState")?;
            let restore_operations = read_data_hook(&env, &o, "restoreOperations")?;

            let max_bytes = max_bytes.map_or(DEFAULT_CHECKPOINT_MAX_BYTES, |v| v as u64);
            let open = || -> std::result::Result<_, DurableError> {
                let dir = Arc::new(open_state_dir(&PathBuf::from(&directory), ERR_CHECKPOINT_LOCKED)?);
                let retain = retain.map_or(DEFAULT_CHECKPOINT_RETAIN, |v| v as usize);
                let (store, skipped) = CheckpointStore::open_in(dir.clone(), retain, max_bytes, Storage::new())?;
                let (journal, problems) = Journal::open_in(dir, JournalOptions::default(), Storage::new())?;
                Ok((store, skipped, journal, problems))
            };
            let (store, skipped, journal, problems) = open().map_err(|e| coded_error(&env, e.code, &e.message))?;
            let core = ManagerCore {
                files: RwLock::new(Some(Files { store, journal })),
                memory,
                gpu,
                capture_state,
                clean_current_state,
                restore_memory_state,
                restore_operations,
                incidents,
                incident_counts: IncidentCounts::default(),
                step_timeout: Duration::from_millis(step_timeout.unwrap_or(STEP_TIMEOUT_MS.default) as u64),
            };
            core.report_skipped(&skipped);
            for problem in &problems {
                core.incident(
                    IncidentKind::JournalRepaired,
                    IncidentSeverity::Warn,
                    format!("journal {}: {}", problem.file, problem.reason),
                    problem_json(problem),
                );
            }
            let opened = json!({ "skipped": skipped_json(&skipped), "journal_problems": problems.iter().map(problem_json).collect::<Vec<_>>() });
            Ok(CheckpointManager { core: Arc::new(core), opened, journal_promises: std::cell::OnceCell::new() })
        })
    }

    /// What opening found: checkpoints skipped as torn or corrupt, and journal repairs.
    #[napi(
        getter,
        ts_return_type = "{ skipped: Array<{ id: string, reason: string, set_aside_as: string | null }>, journal_problems: Array<{ kind: string, file: string, offset: number, reason: string, set_aside_as: string | null }> }"
    )]
    pub fn get_opened(&self, env: Env) -> Result<JsonOut> {
        super::task::guarded(&env, "CheckpointManager.opened", || Ok(JsonOut(self.opened.clone())))
    }

    /// Whether a checkpoint or journal write failed even after its rewrite and no write of
    /// that kind has succeeded since (it clears once the disk takes writes again).
    #[napi(getter)]
    pub fn get_degraded(&self, env: Env) -> Result<bool> {
        super::task::guarded(&env, "CheckpointManager.degraded", || {
            Ok(self.core.files().is_ok_and(|f| f.store.is_degraded() || f.journal.is_degraded()))
        })
    }

    /// Records that operation `id` started; resolves once that is on disk.
    #[napi(ts_args_type = "id: string, details?: unknown", ts_return_type = "Promise<void>")]
    pub fn begin_operation<'env>(
        &self,
        env: &'env Env,
        id: Unknown,
        details: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, ()>> {
        super::task::guarded(env, "CheckpointManager.beginOperation", || {
            let id = read_id(env, &id, "id")?;
            let details = details
                .filter(|d| !matches!(d.get_type(), Ok(ValueType::Undefined)))
                .map(|d| super::json_value(env, d, "details"))
                .transpose()?;
            // Queued here; the journal's writer thread commits every record queued
            // meanwhile with one fdatasync and settles their promises in one go.
            let (promise, settle) = self.journal_promise(env)?;
            match self.core.files_now() {
                Ok(files) => files.journal.queue_begin_operation_then(
                    &id,
                    details.unwrap_or(Value::Null),
                    Box::new(move |outcome| settle.settle(outcome.map_err(failed))),
                ),
                Err(closed) => settle.settle(Err(closed)),
            }
            Ok(promise)
        })
    }

    /// Records that operation `id` ended; resolves once that is on disk. `ERR_NOT_FOUND`
    /// for an id that is not active.
    #[napi(ts_args_type = "id: string, result?: unknown", ts_return_type = "Promise<void>")]
    pub fn end_operation<'env>(
        &self,
        env: &'env Env,
        id: Unknown,
        result: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, ()>> {
        super::task::guarded(env, "CheckpointManager.endOperation", || {
            let id = read_id(env, &id, "id")?;
            let result = result
                .filter(|d| !matches!(d.get_type(), Ok(ValueType::Undefined)))
                .map(|d| super::json_value(env, d, "result"))
                .transpose()?;
            let (promise, settle) = self.journal_promise(env)?;
            match self.core.files_now() {
                Ok(files) => files.journal.queue_end_operation_then(
                    &id,
                    result.unwrap_or(Value::Null),
                    Box::new(move |outcome| settle.settle(outcome.map_err(failed))),
                ),
                Err(closed) => settle.settle(Err(closed)),
            }
            Ok(promise)
        })
    }

    /// The operations begun and not ended, oldest first: `[{ id, started_at, details }]`.
    #[napi(ts_return_type = "Array<{ id: string, started_at: number, details: unknown }>")]
    pub fn get_active_operations(&self, env: Env) -> Result<JsonOut> {
        super::task::guarded(&env, "CheckpointManager.getActiveOperations", || {
            let files = self.core.files().map_err(|(code, message)| coded_error(&env, code, &message))?;
            Ok(JsonOut(operations_json(&files.journal)))
        })
    }

    /// Waits for operations in flight and releases the directory for another process;
    /// later calls reject with `ERR_CLOSED`. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        super::task::guarded(env, "CheckpointManager.close", || {
            let core = self.core.clone();
            spawn_settled(
                env,
                blocking(move || {
                    core.close();
                    Ok(())
                }),
            )
        })
    }

    /// Captures `memory_state`, `gpu_state`, `active_operations` and `state` (from
    /// `captureState`) and writes them; resolves once the checkpoint is durable.
    #[napi(ts_return_type = "Promise<Checkpoint>")]
    pub fn create_checkpoint<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, JsonOut>> {
        super::task::guarded(env, "CheckpointManager.createCheckpoint", || spawn_json(env, self.core.clone().create()))
    }

    /// Runs `cleanCurrentState()`, `restoreMemoryState(memory_state)` and
    /// `restoreOperations(operations)` with the newest valid checkpoint (or the one given by
    /// id or by a checkpoint object's id, re-read from disk), and resolves `{ checkpoint,
    /// operations, skipped }`. `operations` are those active when the process died.
    #[napi(
        ts_args_type = "checkpointOrId?: string | { id: string }",
        ts_return_type = "Promise<{ checkpoint: Checkpoint, operations: Array<{ id: string, started_at: number, details: unknown }>, skipped: Array<{ id: string, reason: string, set_aside_as: string | null }> }>"
    )]
    pub fn restore_from_checkpoint<'env>(
        &self,
        env: &'env Env,
        checkpoint: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, JsonOut>> {
        super::task::guarded(env, "CheckpointManager.restoreFromCheckpoint", || {
            let id = match checkpoint.filter(|c| !matches!(c.get_type(), Ok(ValueType::Undefined | ValueType::Null))) {
                None => None,
                Some(value) if value.get_type()? == ValueType::String => Some(read_id(env, &value, "checkpointOrId")?),
                Some(value) if value.get_type()? == ValueType::Object => {
                    let object: Object = unsafe { value.cast()? };
                    let id: Unknown = object.get_named_property("id")?;
                    Some(read_id(env, &id, "checkpointOrId.id")?)
                }
                Some(other) => {
                    return Err(type_error(
                        env,
                        "ERR_INVALID_ARG_TYPE",
                        format!("checkpointOrId must be a string or a checkpoint, got {}", describe(&other)),
                    ))
                }
            };
            spawn_json(env, self.core.clone().restore(id))
        })
    }

    /// The newest valid checkpoint, or `null`.
    #[napi(ts_return_type = "Promise<Checkpoint | null>")]
    pub fn latest_checkpoint<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, JsonOut>> {
        super::task::guarded(env, "CheckpointManager.latestCheckpoint", || {
            let core = self.core.clone();
            spawn_json(env, blocking(move || core.load(None).map(|(c, _)| c.unwrap_or(Value::Null))))
        })
    }

    /// Every checkpoint file, oldest first: `[{ id, seq, timestamp, bytes, valid }]`.
    #[napi(
        ts_return_type = "Promise<Array<{ id: string, seq: number, timestamp: number, bytes: number, valid: boolean }>>"
    )]
    pub fn list_checkpoints<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, JsonOut>> {
        super::task::guarded(env, "CheckpointManager.listCheckpoints", || {
            let core = self.core.clone();
            spawn_json(
                env,
                blocking(move || {
                    let list = core.files()?.store.list().map_err(failed)?;
                    Ok(Value::Array(
                        list.iter().map(|m| json!({ "id": m.id, "seq": m.seq, "timestamp": m.timestamp_ms, "bytes": m.bytes, "valid": m.valid })).collect(),
                    ))
                }),
            )
        })
    }
}

/// Options of `new CheckpointManager(options)` (declared for the typings).
#[allow(dead_code)]
#[napi(object)]
pub struct CheckpointManagerOptions {
    /// Created 0700; refused if a symlink, not ours, or open to others.
    pub directory: String,
    /// Valid generations kept, at least 2 (default 3).
    pub retain: Option<f64>,
    /// Largest checkpoint written or read (default 64 MiB).
    pub max_bytes: Option<f64>,
    pub memory_monitor: Option<ClassInstance<'static, MemoryMonitor>>,
    pub gpu_monitor: Option<ClassInstance<'static, GpuHealthMonitor>>,
    pub incident_log: Option<ClassInstance<'static, IncidentLog>>,
    /// The service's own state, stored as `state`.
    #[napi(ts_type = "() => unknown")]
    pub capture_state: Option<Value>,
    #[napi(ts_type = "() => unknown")]
    pub clean_current_state: Option<Value>,
    #[napi(ts_type = "(memoryState: unknown) => unknown")]
    pub restore_memory_state: Option<Value>,
    #[napi(ts_type = "(operations: Array<{ id: string, started_at: number, details: unknown }>) => unknown")]
    pub restore_operations: Option<Value>,
    /// Longest a hook may take (default 30000).
    pub step_timeout_ms: Option<f64>,
}

/// A checkpoint as `createCheckpoint` and restore return it (declared for the typings).
#[allow(dead_code)]
#[napi(object, js_name = "Checkpoint")]
pub struct CheckpointShape {
    pub id: String,
    pub seq: f64,
    pub timestamp: f64,
    #[napi(js_name = "memory_state", ts_type = "unknown")]
    pub memory_state: Value,
    #[napi(js_name = "active_operations", ts_type = "Array<{ id: string, started_at: number, details: unknown }>")]
    pub active_operations: Value,
    #[napi(js_name = "gpu_state", ts_type = "unknown")]
    pub gpu_state: Value,
    #[napi(ts_type = "unknown")]
    pub state: Value,
}
