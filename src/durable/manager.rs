//! The checkpoint manager: checkpoints and the operation journal in one directory, and the
//! create and restore sequences with the service's hooks around them. The binding's
//! `CheckpointManager` only converts and validates, then calls this.
//!
//! - create: `captureState()`, then `memory_state`, `gpu_state` and the active operations
//!   are read, the checkpoint is written, and the journal is compacted (the checkpoint holds
//!   what it would replay).
//! - restore: the newest valid checkpoint (or the one named) is read back and checked, then
//!   `cleanCurrentState()`, `restoreMemoryState(memory_state)` and
//!   `restoreOperations(operations)` run in this order, each bounded by the step timeout.
//!
//! What happens on the way is recorded as incidents: the `checkpoint_*` and `journal_*` kinds of
//! [`IncidentKind`], counted for the metrics whether or not a log is attached.

use serde_json::{json, Value};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::closable::Closable;
use super::defaults::{DEFAULT_CHECKPOINT_MAX_BYTES, DEFAULT_CHECKPOINT_RETAIN};
use super::log::Reply;
use super::{
    open_state_dir, Checkpoint, CheckpointStore, DurableError, Journal, JournalOptions, RecoveryProblem, Result,
    SkippedFile, Storage, ERR_CHECKPOINT_LOCKED, ERR_CORRUPT, ERR_NOT_FOUND,
};
use crate::incident::{Incident, IncidentCounts, IncidentKind, IncidentSeverity, IncidentSink};
use crate::policy::thresholds::STEP_TIMEOUT_MS;

/// A hook failed (threw, rejected, or returned what JSON cannot hold).
pub const ERR_STEP_FAILED: &str = "ERR_STEP_FAILED";
/// A hook did not settle within the step timeout.
pub const ERR_STEP_TIMEOUT: &str = "ERR_STEP_TIMEOUT";

/// What a hook call resolves to: its JSON value, or why it failed.
pub type HookFuture = Pin<Box<dyn Future<Output = std::result::Result<Value, String>> + Send>>;

/// A service callback that takes JSON data and gives JSON data back.
pub trait DataHook: Send + Sync {
    fn call(&self, arg: Value) -> HookFuture;
}

/// Where `memory_state` or `gpu_state` comes from: a monitor's current reading as JSON.
pub trait StateSource: Send + Sync {
    fn state(&self) -> Value;
}

impl<F: Fn() -> Value + Send + Sync> StateSource for F {
    fn state(&self) -> Value {
        self()
    }
}

/// The service's hooks; each is optional.
#[derive(Default, Clone)]
pub struct ManagerHooks {
    /// Its own state, stored as `state`.
    pub capture_state: Option<Arc<dyn DataHook>>,
    pub clean_current_state: Option<Arc<dyn DataHook>>,
    /// Gets the checkpoint's `memory_state`.
    pub restore_memory_state: Option<Arc<dyn DataHook>>,
    /// Gets the operations active when the process died.
    pub restore_operations: Option<Arc<dyn DataHook>>,
}

/// What the manager works with besides its directory.
#[derive(Default, Clone)]
pub struct ManagerParts {
    pub memory: Option<Arc<dyn StateSource>>,
    pub gpu: Option<Arc<dyn StateSource>>,
    pub hooks: ManagerHooks,
    pub incidents: Option<Arc<dyn IncidentSink>>,
}

/// The manager's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagerOptions {
    /// Valid checkpoint generations kept.
    pub retain: usize,
    /// Largest checkpoint written or read.
    pub max_bytes: u64,
    /// Longest a hook may take.
    pub step_timeout: Duration,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            retain: DEFAULT_CHECKPOINT_RETAIN,
            max_bytes: DEFAULT_CHECKPOINT_MAX_BYTES,
            step_timeout: Duration::from_millis(STEP_TIMEOUT_MS.default as u64),
        }
    }
}

/// What opening found: checkpoints skipped as torn or corrupt, and journal repairs.
#[derive(Debug)]
pub struct Opened {
    pub skipped: Vec<SkippedFile>,
    pub journal_problems: Vec<RecoveryProblem>,
}

impl Opened {
    /// `{ skipped, journal_problems }`, as `CheckpointManager.opened` shows it.
    pub fn to_json(&self) -> Value {
        json!({
            "skipped": skipped_json(&self.skipped),
            "journal_problems": self.journal_problems.iter().map(problem_json).collect::<Vec<_>>(),
        })
    }
}

struct Files {
    store: CheckpointStore,
    journal: Journal,
}

pub struct CheckpointManager {
    files: Closable<Files>,
    parts: ManagerParts,
    step_timeout: Duration,
    incident_counts: IncidentCounts,
}

/// A journal or log repair as JSON: `{ kind, file, offset, reason, set_aside_as }`.
pub fn problem_json(p: &RecoveryProblem) -> Value {
    json!({ "kind": p.kind.as_str(), "file": p.file, "offset": p.offset, "reason": p.reason, "set_aside_as": p.set_aside_as })
}

/// Skipped checkpoint files as JSON: `[{ id, reason, set_aside_as }]`.
fn skipped_json(skipped: &[SkippedFile]) -> Value {
    Value::Array(
        skipped.iter().map(|s| json!({ "id": s.id, "reason": s.reason, "set_aside_as": s.set_aside_as })).collect(),
    )
}

/// The active operations as JSON: `[{ id, started_at, details }]`, oldest first.
fn operations_json(journal: &Journal) -> Value {
    Value::Array(
        journal
            .active_operations()
            .into_iter()
            .map(|o| json!({ "id": o.id, "started_at": o.started_at_ms, "details": o.details }))
            .collect(),
    )
}

/// A checkpoint file's payload as users see it, with its id and sequence number.
fn checkpoint_json(checkpoint: &Checkpoint) -> Result<Value> {
    let mut payload: Value = serde_json::from_slice(&checkpoint.payload)
        .map_err(|e| DurableError::new(ERR_CORRUPT, format!("{}: {e}", checkpoint.meta.id)))?;
    // Validated before any hook sees it: a checkpoint this package wrote has exactly this shape.
    let shape_ok = payload.as_object().is_some_and(|o| {
        o.get("timestamp").is_some_and(Value::is_number)
            && o.get("active_operations").is_some_and(Value::is_array)
            && ["memory_state", "gpu_state", "state"].iter().all(|k| o.contains_key(*k))
    });
    if !shape_ok {
        let message = format!("{} does not hold a checkpoint of this package", checkpoint.meta.id);
        return Err(DurableError::new(ERR_CORRUPT, message));
    }
    payload["id"] = json!(checkpoint.meta.id);
    payload["seq"] = json!(checkpoint.meta.seq);
    Ok(payload)
}

/// Runs durable work on the blocking pool; a panic there is an `ERR_INTERNAL` failure.
pub async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(DurableError::new("ERR_INTERNAL", format!("internal error in hpc-health: {e}"))))
}

/// Calls `hook` under `timeout`: its value, or `ERR_STEP_FAILED` / `ERR_STEP_TIMEOUT` naming it.
async fn call_hook(hook: &dyn DataHook, arg: Value, timeout: Duration, name: &str) -> Result<Value> {
    match tokio::time::timeout(timeout, hook.call(arg)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(DurableError::new(ERR_STEP_FAILED, format!("{name} failed: {message}"))),
        Err(_) => {
            Err(DurableError::new(ERR_STEP_TIMEOUT, format!("{name} did not finish within {} ms", timeout.as_millis())))
        }
    }
}

impl CheckpointManager {
    /// Opens (creating it 0700) the directory, removes leftover temporary files, replays
    /// the journal. `ERR_CHECKPOINT_LOCKED` when another process owns it. Skipped files and
    /// journal repairs are recorded as incidents too.
    pub fn open(directory: &Path, options: ManagerOptions, parts: ManagerParts) -> Result<(Self, Opened)> {
        let dir = Arc::new(open_state_dir(directory, ERR_CHECKPOINT_LOCKED)?);
        let (store, skipped) =
            CheckpointStore::open_in(dir.clone(), options.retain, options.max_bytes, Storage::new())?;
        let (journal, journal_problems) = Journal::open_in(dir, JournalOptions::default(), Storage::new())?;
        let manager = CheckpointManager {
            files: Closable::new("the checkpoint manager", Files { store, journal }),
            parts,
            step_timeout: options.step_timeout,
            incident_counts: IncidentCounts::default(),
        };
        manager.report_skipped(&skipped);
        for problem in &journal_problems {
            manager.incident(
                IncidentKind::JournalRepaired,
                IncidentSeverity::Warn,
                format!("journal {}: {}", problem.file, problem.reason),
                problem_json(problem),
            );
        }
        Ok((manager, Opened { skipped, journal_problems }))
    }

    /// Waits for operations in flight, then releases the directory. Idempotent.
    pub fn close(&self) {
        self.files.close();
    }

    /// Whether a checkpoint or journal write failed even after its rewrite and no write of
    /// that kind has succeeded since; `false` once closed.
    pub fn is_degraded(&self) -> bool {
        self.files.with(|f| Ok(f.store.is_degraded() || f.journal.is_degraded())).unwrap_or(false)
    }

    /// Records that operation `id` started; returns once that is on disk.
    pub fn begin_operation(&self, id: &str, details: Value) -> Result<()> {
        self.files.with(|f| f.journal.begin_operation(id, details))
    }

    /// Records that operation `id` ended; `ERR_NOT_FOUND` for an id that is not active.
    pub fn end_operation(&self, id: &str, result: Value) -> Result<()> {
        self.files.with(|f| f.journal.end_operation(id, result))
    }

    /// As `begin_operation`, without blocking the caller (the JS thread): the record is
    /// queued and the journal's writer calls `reply` once it is on disk (with the others
    /// queued meanwhile, under one fdatasync). A manager closing counts as closed.
    pub fn queue_begin_operation_then(&self, id: &str, details: Value, reply: Reply<()>) {
        self.queue_then(reply, |journal, reply| journal.queue_begin_operation_then(id, details, reply));
    }

    /// As `end_operation`, without blocking the caller; see `queue_begin_operation_then`.
    pub fn queue_end_operation_then(&self, id: &str, result: Value, reply: Reply<()>) {
        self.queue_then(reply, |journal, reply| journal.queue_end_operation_then(id, result, reply));
    }

    /// Hands `reply` to `queue` with the journal, or answers it `ERR_CLOSED` at once.
    fn queue_then(&self, reply: Reply<()>, queue: impl FnOnce(&Journal, Reply<()>)) {
        let mut reply = Some(reply);
        let queued = self.files.try_with(|f| {
            queue(&f.journal, reply.take().expect("queued once"));
            Ok(())
        });
        if let (Err(closed), Some(reply)) = (queued, reply) {
            reply(Err(closed));
        }
    }

    /// The operations begun and not ended, oldest first: `[{ id, started_at, details }]`.
    pub fn active_operations(&self) -> Result<Value> {
        self.files.with(|f| Ok(operations_json(&f.journal)))
    }

    /// Every checkpoint file, oldest first: `[{ id, seq, timestamp, bytes, valid }]`.
    pub fn list(&self) -> Result<Value> {
        let list = self.files.with(|f| f.store.list())?;
        Ok(Value::Array(
            list.iter()
                .map(|m| json!({ "id": m.id, "seq": m.seq, "timestamp": m.timestamp_ms, "bytes": m.bytes, "valid": m.valid }))
                .collect(),
        ))
    }

    /// The newest valid checkpoint, or `null`; what was skipped on the way is recorded.
    pub fn latest(&self) -> Result<Value> {
        Ok(self.load(None)?.0.unwrap_or(Value::Null))
    }

    fn incident(&self, kind: IncidentKind, severity: IncidentSeverity, message: String, details: Value) {
        self.incident_counts.add(kind);
        if let Some(log) = &self.parts.incidents {
            // A failing incident log does not fail the checkpoint work it reports on.
            let _ = log.record(Incident::new(kind, severity, message, details));
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

    /// Captures and writes a checkpoint; resolves once it is durable, with the checkpoint.
    pub async fn create(self: Arc<Self>) -> Result<Value> {
        let state = match &self.parts.hooks.capture_state {
            Some(hook) => call_hook(hook.as_ref(), Value::Null, self.step_timeout, "captureState").await?,
            None => Value::Null,
        };
        off_thread(move || self.write_checkpoint(state)).await
    }

    fn write_checkpoint(&self, state: Value) -> Result<Value> {
        self.files.with(|files| {
            let memory_state = match &self.parts.memory {
                Some(m) => m.state(),
                None => json!({ "absent": "no memoryMonitor was given" }),
            };
            let gpu_state = match &self.parts.gpu {
                Some(g) => g.state(),
                None => json!({ "absent": "no gpuMonitor was given" }),
            };
            let payload = json!({
                "timestamp": crate::sampling::unix_time_ms(),
                "memory_state": memory_state,
                "active_operations": operations_json(&files.journal),
                "gpu_state": gpu_state,
                "state": state,
            });
            let meta = files.store.write_value(&payload).inspect_err(|e| {
                self.incident(
                    IncidentKind::CheckpointFailed,
                    IncidentSeverity::Error,
                    format!("checkpoint not written: {}", e.message),
                    json!({ "code": e.code }),
                );
            })?;
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
    }

    /// The newest valid checkpoint (`id: None`) or the one named, validated; plus what was skipped.
    fn load(&self, id: Option<String>) -> Result<(Option<Value>, Vec<SkippedFile>)> {
        self.files.with(|files| match id {
            Some(id) => {
                let checkpoint = files.store.load(&id)?;
                Ok((Some(checkpoint_json(&checkpoint)?), Vec::new()))
            }
            None => {
                let latest = files.store.latest_valid()?;
                self.report_skipped(&latest.skipped);
                let checkpoint = latest.checkpoint.as_ref().map(checkpoint_json).transpose()?;
                Ok((checkpoint, latest.skipped))
            }
        })
    }

    /// Restores the newest valid checkpoint, or the one named by `id`: the hooks run in
    /// order with it, and it resolves `{ checkpoint, operations, skipped }`, `operations`
    /// being those active when the process died. `ERR_NOT_FOUND` when there is none.
    pub async fn restore(self: Arc<Self>, id: Option<String>) -> Result<Value> {
        let this = self.clone();
        let (checkpoint, skipped, operations) = off_thread(move || {
            let (checkpoint, skipped) = this.load(id)?;
            let checkpoint =
                checkpoint.ok_or_else(|| DurableError::new(ERR_NOT_FOUND, "no valid checkpoint to restore"))?;
            // Active when the process died: the journal, which the last checkpoint compacted.
            let operations = this.active_operations()?;
            Ok((checkpoint, skipped, operations))
        })
        .await?;
        let hooks = &self.parts.hooks;
        for (hook, arg, name) in [
            (&hooks.clean_current_state, Value::Null, "cleanCurrentState"),
            (&hooks.restore_memory_state, checkpoint["memory_state"].clone(), "restoreMemoryState"),
            (&hooks.restore_operations, operations.clone(), "restoreOperations"),
        ] {
            if let Some(hook) = hook {
                call_hook(hook.as_ref(), arg, self.step_timeout, name).await?;
            }
        }
        let this = self.clone();
        let id = checkpoint["id"].clone();
        let _ = off_thread(move || {
            let message = format!("restored {id}");
            this.incident(IncidentKind::CheckpointRestored, IncidentSeverity::Info, message, json!({ "id": id }));
            Ok(())
        })
        .await;
        Ok(json!({ "checkpoint": checkpoint, "operations": operations, "skipped": skipped_json(&skipped) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Every hook call and incident, in the order they happened.
    #[derive(Default)]
    struct Trace(Mutex<Vec<String>>);

    impl Trace {
        fn push(&self, entry: String) {
            self.0.lock().unwrap().push(entry);
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl IncidentSink for Trace {
        fn record(&self, incident: Incident) -> std::result::Result<u64, String> {
            self.push(format!("incident {} {}", incident.kind, incident.severity.as_str()));
            Ok(0)
        }
    }

    enum Reply {
        Value(Value),
        Fail(&'static str),
        Never,
    }

    struct TraceHook {
        name: &'static str,
        trace: Arc<Trace>,
        reply: Reply,
    }

    impl DataHook for TraceHook {
        fn call(&self, arg: Value) -> HookFuture {
            self.trace.push(format!("{} {arg}", self.name));
            match &self.reply {
                Reply::Value(v) => {
                    let v = v.clone();
                    Box::pin(async move { Ok(v) })
                }
                Reply::Fail(message) => {
                    let message = message.to_string();
                    Box::pin(async move { Err(message) })
                }
                Reply::Never => Box::pin(std::future::pending()),
            }
        }
    }

    fn hook(trace: &Arc<Trace>, name: &'static str, reply: Reply) -> Option<Arc<dyn DataHook>> {
        Some(Arc::new(TraceHook { name, trace: trace.clone(), reply }))
    }

    fn parts(trace: &Arc<Trace>) -> ManagerParts {
        ManagerParts {
            memory: Some(Arc::new(|| json!({ "gpu_used": 1 }))),
            gpu: None,
            hooks: ManagerHooks {
                capture_state: hook(trace, "captureState", Reply::Value(json!({ "jobs": 2 }))),
                clean_current_state: hook(trace, "cleanCurrentState", Reply::Value(Value::Null)),
                restore_memory_state: hook(trace, "restoreMemoryState", Reply::Value(Value::Null)),
                restore_operations: hook(trace, "restoreOperations", Reply::Value(Value::Null)),
            },
            incidents: Some(trace.clone()),
        }
    }

    fn open(root: &Path, parts: ManagerParts) -> Arc<CheckpointManager> {
        Arc::new(CheckpointManager::open(root, ManagerOptions::default(), parts).unwrap().0)
    }

    #[tokio::test]
    async fn create_captures_state_writes_and_records_then_restore_runs_the_hooks_in_order() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("state");
        let trace = Arc::new(Trace::default());
        let manager = open(&root, parts(&trace));
        manager.begin_operation("job-1", json!({ "n": 1 })).unwrap();
        let created = manager.clone().create().await.unwrap();
        assert_eq!(created["state"], json!({ "jobs": 2 }));
        assert_eq!(created["memory_state"], json!({ "gpu_used": 1 }));
        assert_eq!(created["gpu_state"], json!({ "absent": "no gpuMonitor was given" }));
        assert_eq!(created["active_operations"][0]["id"], "job-1");
        assert!(created["timestamp"].is_number() && created["seq"].is_number(), "{created}");
        assert_eq!(trace.take(), ["captureState null", "incident checkpoint_created info"]);

        manager.close();
        // A new process: the operation begun before the checkpoint is still active.
        let manager = open(&root, parts(&trace));
        let restored = manager.clone().restore(None).await.unwrap();
        assert_eq!(restored["checkpoint"]["id"], created["id"]);
        assert_eq!(restored["checkpoint"]["state"], json!({ "jobs": 2 }));
        assert_eq!(restored["operations"][0]["id"], "job-1");
        assert_eq!(restored["skipped"], json!([]));
        let ops = restored["operations"].to_string();
        assert_eq!(
            trace.take(),
            [
                "cleanCurrentState null".to_owned(),
                r#"restoreMemoryState {"gpu_used":1}"#.to_owned(),
                format!("restoreOperations {ops}"),
                "incident checkpoint_restored info".to_owned(),
            ]
        );
    }

    #[tokio::test]
    async fn create_compacts_the_journal_down_to_the_active_operations() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("state");
        let trace = Arc::new(Trace::default());
        let manager = open(&root, parts(&trace));
        for i in 0..50 {
            manager.begin_operation(&format!("done-{i}"), json!("x".repeat(200))).unwrap();
            manager.end_operation(&format!("done-{i}"), Value::Null).unwrap();
        }
        manager.begin_operation("live", Value::Null).unwrap();
        let journal_bytes = |root: &Path| -> u64 {
            std::fs::read_dir(root)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("journal"))
                .map(|e| e.metadata().unwrap().len())
                .sum()
        };
        let before = journal_bytes(&root);
        manager.clone().create().await.unwrap();
        let after = journal_bytes(&root);
        assert!(before > 15_000 && after < 1_000, "journal {before} -> {after} bytes");
        assert_eq!(manager.active_operations().unwrap()[0]["id"], "live");
    }

    #[tokio::test]
    async fn hook_failures_and_timeouts_carry_the_step_codes_and_name_the_hook() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("state");
        let trace = Arc::new(Trace::default());
        let mut failing = parts(&trace);
        failing.hooks.capture_state = hook(&trace, "captureState", Reply::Fail("boom"));
        let manager = open(&root, failing);
        let e = manager.clone().create().await.unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (ERR_STEP_FAILED, "captureState failed: boom"));
        assert!(manager.list().unwrap().as_array().unwrap().is_empty(), "nothing written");
        manager.close();

        let mut hanging = parts(&trace);
        hanging.hooks.restore_memory_state = hook(&trace, "restoreMemoryState", Reply::Never);
        let options = ManagerOptions { step_timeout: Duration::from_millis(50), ..ManagerOptions::default() };
        let manager = Arc::new(CheckpointManager::open(&root, options, hanging).unwrap().0);
        manager.clone().create().await.unwrap();
        trace.take();
        let e = manager.clone().restore(None).await.unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (ERR_STEP_TIMEOUT, "restoreMemoryState did not finish within 50 ms"));
        // The sequence stops at the hook that failed: no later hook, no restored incident.
        assert_eq!(trace.take(), ["cleanCurrentState null", r#"restoreMemoryState {"gpu_used":1}"#]);
    }

    #[tokio::test]
    async fn restore_without_a_checkpoint_is_not_found_and_a_closed_manager_refuses_work() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("state");
        let trace = Arc::new(Trace::default());
        let manager = open(&root, parts(&trace));
        assert_eq!(manager.clone().restore(None).await.unwrap_err().code, ERR_NOT_FOUND);
        assert_eq!(manager.latest().unwrap(), Value::Null);
        assert!(trace.take().is_empty(), "no hook runs without a checkpoint");
        manager.close();
        manager.close();
        assert_eq!(manager.begin_operation("a", Value::Null).unwrap_err().code, super::super::closable::ERR_CLOSED);
        assert_eq!(manager.clone().create().await.unwrap_err().code, super::super::closable::ERR_CLOSED);
        assert!(!manager.is_degraded());
        // Closing released the directory: another manager opens it.
        open(&root, parts(&trace));
    }

    #[tokio::test]
    async fn a_damaged_newest_checkpoint_is_skipped_recorded_and_the_previous_one_restored() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("state");
        let trace = Arc::new(Trace::default());
        let manager = open(&root, parts(&trace));
        let first = manager.clone().create().await.unwrap();
        let second = manager.clone().create().await.unwrap();
        manager.close();
        let path = root.join(format!("{}.ckpt", second["id"].as_str().unwrap()));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        trace.take();

        let (manager, opened) = CheckpointManager::open(&root, ManagerOptions::default(), parts(&trace)).unwrap();
        let manager = Arc::new(manager);
        let restored = manager.clone().restore(None).await.unwrap();
        assert_eq!(restored["checkpoint"]["id"], first["id"]);
        let skipped = [opened.to_json()["skipped"].clone(), restored["skipped"].clone()];
        assert!(
            skipped.iter().any(|s| s[0]["id"] == second["id"]),
            "the damaged checkpoint is reported as skipped: {skipped:?}"
        );
        assert!(trace.take().contains(&"incident checkpoint_corrupt error".to_owned()));
    }

    #[test]
    fn a_file_of_another_shape_is_corrupt_before_any_hook_sees_it() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("state");
        let trace = Arc::new(Trace::default());
        let (manager, _) = CheckpointManager::open(&root, ManagerOptions::default(), parts(&trace)).unwrap();
        let meta = manager.files.with(|f| f.store.write_value(&json!({ "timestamp": 1 }))).unwrap();
        let e = manager.load(Some(meta.id.clone())).unwrap_err();
        assert_eq!(e.code, ERR_CORRUPT);
        assert_eq!(e.message, format!("{} does not hold a checkpoint of this package", meta.id));
    }
}
