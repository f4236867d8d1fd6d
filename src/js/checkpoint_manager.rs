//! `CheckpointManager`: durable checkpoints and the operation journal, and the restore flow.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown, ValueType};
use napi_derive::napi;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::args::{describe, js_string, range_error, type_error};
use super::gpu_health_monitor::GpuHealthMonitor;
use super::incident_log::IncidentLog;
use super::input::{js_fields, Fields, Instance};
use super::json::JsonOut;
use super::memory_monitor::MemoryMonitor;
use super::promise_batch::{PromiseBatch, Settle};
use super::task::{coded_error, spawn_settled};
use crate::durable::defaults::MAX_OPERATION_ID_BYTES;
use crate::durable::manager::{
    off_thread, CheckpointManager as Core, DataHook, ManagerHooks, ManagerOptions, ManagerParts, StateSource,
};
use crate::incident::IncidentSink;
use crate::policy::thresholds::{ThresholdSpec, MAX_SAFE_INTEGER, STEP_TIMEOUT_MS};
use crate::shapes::to_json;

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

/// Durable checkpoints (newest valid wins) and an operation journal, in one directory that
/// one process owns.
#[napi]
pub struct CheckpointManager {
    pub(crate) core: Arc<Core>,
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

/// A durable failure as a promise batch settles it.
fn failed(e: crate::durable::DurableError) -> (&'static str, String) {
    (e.code, e.message)
}

fn read_id(env: &Env, value: &Unknown, name: &str) -> Result<String> {
    let id = js_string(env, value, name)?;
    if id.is_empty() || id.len() > MAX_OPERATION_ID_BYTES {
        return Err(range_error(
            env,
            format!("{name} must be 1 to {MAX_OPERATION_ID_BYTES} bytes long, got {}", id.len()),
        ));
    }
    Ok(id)
}

/// Like [`spawn_settled`], for work that resolves JSON data.
fn spawn_json<'env>(
    env: &'env Env,
    work: impl std::future::Future<Output = crate::durable::Result<Value>> + Send + 'static,
) -> Result<PromiseRaw<'env, JsonOut>> {
    spawn_settled(env, async move { work.await.map(JsonOut) })
}

impl super::input::Attachable for CheckpointManager {
    const JS_NAME: &'static str = "CheckpointManager";
    type Core = Arc<Core>;
    fn core(&self) -> Self::Core {
        self.core.clone()
    }
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
            let o = CheckpointManagerOptions::required(&env, options, "options")?;
            let defaults = ManagerOptions::default();
            let options = ManagerOptions {
                retain: o.retain.map_or(defaults.retain, |v| v as usize),
                max_bytes: o.max_bytes.map_or(defaults.max_bytes, |v| v as u64),
                step_timeout: o.step_timeout_ms.map_or(defaults.step_timeout, |v| Duration::from_millis(v as u64)),
            };
            let parts = ManagerParts {
                memory: o
                    .memory_monitor
                    .map(|Instance(m)| Arc::new(move || to_json(&m.get_memory_metrics())) as Arc<dyn StateSource>),
                gpu: o
                    .gpu_monitor
                    .map(|Instance(g)| Arc::new(move || to_json(&g.check_gpu_health())) as Arc<dyn StateSource>),
                hooks: ManagerHooks {
                    capture_state: o.capture_state,
                    clean_current_state: o.clean_current_state,
                    restore_memory_state: o.restore_memory_state,
                    restore_operations: o.restore_operations,
                },
                incidents: o.incident_log.map(|Instance(log)| log as Arc<dyn IncidentSink>),
            };
            let (core, opened) = Core::open(&PathBuf::from(&o.directory), options, parts)
                .map_err(|e| coded_error(&env, e.code, &e.message))?;
            Ok(CheckpointManager {
                core: Arc::new(core),
                opened: opened.to_json(),
                journal_promises: std::cell::OnceCell::new(),
            })
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
        super::task::guarded(&env, "CheckpointManager.degraded", || Ok(self.core.is_degraded()))
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
            let details = super::optional_json_value(env, details, "details")?;
            // Queued here; the journal's writer thread commits every record queued
            // meanwhile with one fdatasync and settles their promises in one go.
            let (promise, settle) = self.journal_promise(env)?;
            self.core.queue_begin_operation_then(
                &id,
                details,
                Box::new(move |outcome| settle.settle(outcome.map_err(failed))),
            );
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
            let result = super::optional_json_value(env, result, "result")?;
            let (promise, settle) = self.journal_promise(env)?;
            self.core.queue_end_operation_then(
                &id,
                result,
                Box::new(move |outcome| settle.settle(outcome.map_err(failed))),
            );
            Ok(promise)
        })
    }

    /// The operations begun and not ended, oldest first: `[{ id, started_at, details }]`.
    #[napi(ts_return_type = "Array<{ id: string, started_at: number, details: unknown }>")]
    pub fn get_active_operations(&self, env: Env) -> Result<JsonOut> {
        super::task::guarded(&env, "CheckpointManager.getActiveOperations", || {
            self.core.active_operations().map(JsonOut).map_err(|e| coded_error(&env, e.code, &e.message))
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
                off_thread(move || {
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
                    // SAFETY: the match guard checked that the value is an object.
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
            spawn_json(env, off_thread(move || core.latest()))
        })
    }

    /// Every checkpoint file, oldest first: `[{ id, seq, timestamp, bytes, valid }]`.
    #[napi(
        ts_return_type = "Promise<Array<{ id: string, seq: number, timestamp: number, bytes: number, valid: boolean }>>"
    )]
    pub fn list_checkpoints<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, JsonOut>> {
        super::task::guarded(env, "CheckpointManager.listCheckpoints", || {
            let core = self.core.clone();
            spawn_json(env, off_thread(move || core.list()))
        })
    }
}

/// Options of `new CheckpointManager(options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct CheckpointManagerOptions {
    /// Created 0700; refused if a symlink, not ours, or open to others.
    pub directory: String,
    /// Valid generations kept, at least 2 (default 3).
    pub retain: Option<f64>,
    /// Largest checkpoint written or read (default 64 MiB).
    pub max_bytes: Option<f64>,
    #[napi(ts_type = "MemoryMonitor")]
    pub memory_monitor: Option<Instance<MemoryMonitor>>,
    #[napi(ts_type = "GpuHealthMonitor")]
    pub gpu_monitor: Option<Instance<GpuHealthMonitor>>,
    #[napi(ts_type = "IncidentLog")]
    pub incident_log: Option<Instance<IncidentLog>>,
    /// The service's own state, stored as `state`.
    #[napi(ts_type = "() => unknown")]
    pub capture_state: Option<Arc<dyn DataHook>>,
    #[napi(ts_type = "() => unknown")]
    pub clean_current_state: Option<Arc<dyn DataHook>>,
    #[napi(ts_type = "(memoryState: unknown) => unknown")]
    pub restore_memory_state: Option<Arc<dyn DataHook>>,
    #[napi(ts_type = "(operations: Array<{ id: string, started_at: number, details: unknown }>) => unknown")]
    pub restore_operations: Option<Arc<dyn DataHook>>,
    /// Longest a hook may take (default 30000).
    pub step_timeout_ms: Option<f64>,
}

js_fields!(CheckpointManagerOptions {
    directory = "directory",
    retain = "retain" check RETAIN,
    max_bytes = "maxBytes" check MAX_BYTES,
    memory_monitor = "memoryMonitor",
    gpu_monitor = "gpuMonitor",
    incident_log = "incidentLog",
    capture_state = "captureState",
    clean_current_state = "cleanCurrentState",
    restore_memory_state = "restoreMemoryState",
    restore_operations = "restoreOperations",
    step_timeout_ms = "stepTimeoutMs" check STEP_TIMEOUT_MS,
});
