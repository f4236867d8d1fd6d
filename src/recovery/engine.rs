//! The recovery engine: a run is a list of named steps, each under a timeout, each leaving
//! a record; runs are single-flight per recovery object. It knows nothing of JavaScript:
//! a step's hook is anything that implements [`Hook`], a Rust closure in tests.

use crate::incident::{Incident, IncidentCounts, IncidentKind, IncidentSeverity, IncidentSink};
use crate::sampling::{duration_ms, unix_time_ms};
use crate::sync::lock;
use futures::FutureExt;
use serde_json::{json, Value};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What a failed step reports; the caller's promise rejects with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub step: String,
    /// `ERR_STEP_FAILED` (it threw or rejected) or `ERR_STEP_TIMEOUT`.
    pub code: &'static str,
    pub message: String,
}

pub const ERR_STEP_FAILED: &str = "ERR_STEP_FAILED";
pub const ERR_STEP_TIMEOUT: &str = "ERR_STEP_TIMEOUT";
/// The step was abandoned because the run was interrupted (`Interrupter::interrupt`).
pub const ERR_INTERRUPTED: &str = "ERR_INTERRUPTED";

impl StepError {
    /// The result of a run that stopped on this error.
    pub fn run_result(&self) -> RunResult {
        if self.code == ERR_INTERRUPTED {
            RunResult::Interrupted
        } else {
            RunResult::Failed
        }
    }

    /// How a step that failed with this error is recorded.
    pub fn status(&self) -> StepStatus {
        match self.code {
            ERR_STEP_TIMEOUT => StepStatus::TimedOut,
            ERR_INTERRUPTED => StepStatus::Interrupted,
            _ => StepStatus::Failed,
        }
    }

    pub fn interrupted(step: &str) -> Self {
        StepError {
            step: step.to_owned(),
            code: ERR_INTERRUPTED,
            message: format!("step {step} abandoned: the recovery was interrupted (the supervisor is stopping)"),
        }
    }
}

/// Interrupts the runs under way, e.g. when the service shuts down: each abandons the wait
/// it is in (a hook, blocking work, polling for devices) at once and ends `interrupted`.
/// A run started after the call is not affected.
pub struct Interrupter {
    generation: watch::Sender<u64>,
}

impl Default for Interrupter {
    fn default() -> Self {
        Interrupter { generation: watch::channel(0).0 }
    }
}

impl Interrupter {
    pub fn interrupt(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// A run that `interrupt` can abandon.
    pub fn new_run(&self, kind: &'static str) -> Run {
        Run { interrupt: Some(self.generation.subscribe()), ..Run::new(kind) }
    }
}

pub type HookFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Something a step calls: a JavaScript function in the binding, a closure in tests. It gets
/// the error that led to it, for `emergencyCleanup(error)`.
pub trait Hook: Send + Sync {
    fn invoke(&self, cause: Option<&StepError>) -> HookFuture;
}

impl<F> Hook for F
where
    F: Fn(Option<&StepError>) -> HookFuture + Send + Sync,
{
    fn invoke(&self, cause: Option<&StepError>) -> HookFuture {
        self(cause)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Ok,
    Skipped,
    Failed,
    TimedOut,
    /// Abandoned when the run was interrupted.
    Interrupted,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::TimedOut => "timed_out",
            StepStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    pub duration_ms: f64,
    pub error: Option<String>,
    /// What the step found or did, e.g. `{ "released_bytes": 1048576 }`.
    pub detail: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    /// The cause is gone.
    Recovered,
    /// Every step ran, but verification still sees the cause.
    NotRecovered,
    /// A step failed or timed out.
    Failed,
    /// Abandoned midway by `Interrupter::interrupt` (the service is stopping).
    Interrupted,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Recovered => "recovered",
            RunResult::NotRecovered => "not_recovered",
            RunResult::Failed => "failed",
            RunResult::Interrupted => "interrupted",
        }
    }
}

/// The complete record of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryOutcome {
    pub id: String,
    /// `memory`, `out_of_memory`, `device_lost`.
    pub kind: &'static str,
    pub started_at_ms: f64,
    pub finished_at_ms: f64,
    pub result: RunResult,
    pub steps: Vec<StepRecord>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The step error the run failed with.
    pub error: Option<StepError>,
    /// Why the emergency cleanup after that error failed too.
    pub cleanup_error: Option<String>,
}

/// A run id unique within the process and readable in logs: `<kind>-<ms>-<n>`.
pub fn new_run_id(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{kind}-{}-{}", unix_time_ms() as u64, COUNTER.fetch_add(1, Ordering::Relaxed) + 1)
}

/// A run under way: steps are appended as they finish.
pub struct Run {
    pub id: String,
    pub kind: &'static str,
    pub started_at_ms: f64,
    pub steps: Vec<StepRecord>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Signals `Interrupter::interrupt` (`None`: the run cannot be interrupted).
    interrupt: Option<watch::Receiver<u64>>,
    interrupted: bool,
}

impl Run {
    /// A run that cannot be interrupted; see `Interrupter::new_run`.
    pub fn new(kind: &'static str) -> Self {
        Run {
            id: new_run_id(kind),
            kind,
            started_at_ms: unix_time_ms(),
            steps: Vec::new(),
            before: None,
            after: None,
            interrupt: None,
            interrupted: false,
        }
    }

    /// Whether the run has been interrupted.
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    /// Awaits `work`, or gives `None` once the run is interrupted (at once if it already was).
    pub async fn unless_interrupted<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        if self.interrupted {
            return None;
        }
        let signal = async {
            // An error means the interrupter is gone: nothing can interrupt any more.
            let signalled = match &mut self.interrupt {
                Some(receiver) => receiver.changed().await.is_ok(),
                None => false,
            };
            if !signalled {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            () = signal => {
                self.interrupted = true;
                None
            }
            value = work => Some(value),
        }
    }

    /// Calls `hook` under `timeout` and records the step. `None` hook: recorded as skipped.
    pub async fn hook_step(
        &mut self,
        name: &str,
        hook: Option<&Arc<dyn Hook>>,
        cause: Option<&StepError>,
        timeout: Duration,
    ) -> Result<(), StepError> {
        let Some(hook) = hook else {
            self.record(name, StepStatus::Skipped, 0.0, None, None);
            return Ok(());
        };
        let started = Instant::now();
        // A hook may panic (a Rust test hook) or never settle (a JS promise left pending).
        let call = AssertUnwindSafe(hook.invoke(cause)).catch_unwind();
        let outcome = match self.unless_interrupted(tokio::time::timeout(timeout, call)).await {
            None => Err(StepError::interrupted(name)),
            Some(Ok(Ok(Ok(())))) => Ok(()),
            Some(Ok(Ok(Err(message)))) => Err(StepError { step: name.to_owned(), code: ERR_STEP_FAILED, message }),
            Some(Ok(Err(_panic))) => {
                Err(StepError { step: name.to_owned(), code: ERR_STEP_FAILED, message: "the hook panicked".to_owned() })
            }
            Some(Err(_)) => Err(StepError {
                step: name.to_owned(),
                code: ERR_STEP_TIMEOUT,
                message: format!("step {name} did not finish within {} ms", timeout.as_millis()),
            }),
        };
        let elapsed = duration_ms(started.elapsed());
        match &outcome {
            Ok(()) => self.record(name, StepStatus::Ok, elapsed, None, None),
            Err(e) => self.record(name, e.status(), elapsed, Some(e.message.clone()), None),
        }
        outcome
    }

    /// Runs blocking work of the package's own (reading /proc, NVML) off the async threads,
    /// under `timeout`, and records it.
    pub async fn blocking_step<T: Send + 'static>(
        &mut self,
        name: &str,
        timeout: Duration,
        work: impl FnOnce() -> Result<(T, Option<Value>), String> + Send + 'static,
    ) -> Result<T, StepError> {
        let started = Instant::now();
        let outcome =
            match self.unless_interrupted(tokio::time::timeout(timeout, tokio::task::spawn_blocking(work))).await {
                None => Err(StepError::interrupted(name)),
                Some(Ok(Ok(result))) => {
                    result.map_err(|message| StepError { step: name.to_owned(), code: ERR_STEP_FAILED, message })
                }
                Some(Ok(Err(join))) => Err(StepError {
                    step: name.to_owned(),
                    code: ERR_STEP_FAILED,
                    message: format!("step panicked: {join}"),
                }),
                Some(Err(_)) => Err(StepError {
                    step: name.to_owned(),
                    code: ERR_STEP_TIMEOUT,
                    message: format!("step {name} did not finish within {} ms", timeout.as_millis()),
                }),
            };
        let elapsed = duration_ms(started.elapsed());
        match outcome {
            Ok((value, detail)) => {
                self.record(name, StepStatus::Ok, elapsed, None, detail);
                Ok(value)
            }
            Err(e) => {
                self.record(name, e.status(), elapsed, Some(e.message.clone()), None);
                Err(e)
            }
        }
    }

    pub fn record(
        &mut self,
        name: &str,
        status: StepStatus,
        duration_ms: f64,
        error: Option<String>,
        detail: Option<Value>,
    ) {
        self.steps.push(StepRecord { name: name.to_owned(), status, duration_ms, error, detail });
    }

    pub fn finish(self, result: RunResult, error: Option<StepError>, cleanup_error: Option<String>) -> RecoveryOutcome {
        RecoveryOutcome {
            id: self.id,
            kind: self.kind,
            started_at_ms: self.started_at_ms,
            finished_at_ms: unix_time_ms(),
            result,
            steps: self.steps,
            before: self.before,
            after: self.after,
            error,
            cleanup_error,
        }
    }
}

/// The run in flight: its kind, and where its outcome will appear.
type InFlight = (&'static str, watch::Receiver<Option<Arc<RecoveryOutcome>>>);

/// What every recovery object shares: one run at a time, the last outcome, the incident sink.
pub struct RecoveryCore {
    flight: Mutex<Option<InFlight>>,
    last: Mutex<Option<Arc<RecoveryOutcome>>>,
    sink: RwLock<Option<Arc<dyn IncidentSink>>>,
    interrupter: Interrupter,
    incident_counts: IncidentCounts,
}

impl Default for RecoveryCore {
    fn default() -> Self {
        RecoveryCore {
            flight: Mutex::new(None),
            last: Mutex::new(None),
            sink: RwLock::new(None),
            interrupter: Interrupter::default(),
            incident_counts: IncidentCounts::default(),
        }
    }
}

impl RecoveryCore {
    /// A run of this recovery object, which `interrupt` can abandon.
    pub fn new_run(&self, kind: &'static str) -> Run {
        self.interrupter.new_run(kind)
    }

    /// Abandons the run under way, if any (see `Interrupter`): it ends `interrupted` and
    /// leaves its record and `recovery_finished` incident as any run does.
    pub fn interrupt(&self) {
        self.interrupter.interrupt();
    }

    pub fn last_outcome(&self) -> Option<Arc<RecoveryOutcome>> {
        lock(&self.last).clone()
    }

    /// The incidents this object's runs raised, by kind (for the supervisor's metrics).
    pub fn incident_counts(&self) -> std::collections::BTreeMap<IncidentKind, u64> {
        self.incident_counts.snapshot()
    }

    pub fn set_incident_sink(&self, sink: Option<Arc<dyn IncidentSink>>) {
        *crate::sync::write(&self.sink) = sink;
    }

    /// Whether a run is in flight.
    pub fn busy(&self) -> bool {
        lock(&self.flight).is_some()
    }

    /// Runs `start()` unless a run of the same kind is in flight, in which case this call
    /// joins it and gets its outcome. A run of another kind is waited for first: no two runs
    /// of one recovery object ever overlap.
    pub async fn single_flight<F>(&self, kind: &'static str, start: impl FnOnce() -> F) -> Arc<RecoveryOutcome>
    where
        F: Future<Output = RecoveryOutcome>,
    {
        let sender = loop {
            let waiting = {
                let mut flight = lock(&self.flight);
                match &*flight {
                    Some((running, receiver)) => (*running == kind, receiver.clone()),
                    None => {
                        let (sender, receiver) = watch::channel(None);
                        *flight = Some((kind, receiver));
                        break sender;
                    }
                }
            };
            let (join, mut receiver) = waiting;
            // The sender is dropped only after it sent, or if the run's task was dropped.
            let outcome = loop {
                if let Some(outcome) = receiver.borrow().clone() {
                    break Some(outcome);
                }
                if receiver.changed().await.is_err() {
                    break receiver.borrow().clone();
                }
            };
            match (join, outcome) {
                (true, Some(outcome)) => return outcome,
                // Another kind finished, or the run vanished: try to start our own.
                _ => continue,
            }
        };
        // Clears the slot even if this future is dropped midway, so nothing waits forever.
        struct Clear<'a>(&'a RecoveryCore);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                *lock(&self.0.flight) = None;
            }
        }
        let clear = Clear(self);
        let outcome = Arc::new(start().await);
        *lock(&self.last) = Some(outcome.clone());
        drop(clear);
        let _ = sender.send(Some(outcome.clone()));
        outcome
    }

    /// Writes an incident if a sink is attached, off the async threads (it fsyncs). A sink
    /// that fails is reported in the returned string, never fails the recovery.
    pub async fn incident(&self, incident: Incident) -> Option<String> {
        let sink = crate::sync::read(&self.sink).clone()?;
        match tokio::task::spawn_blocking(move || sink.record(incident)).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(format!("incident sink panicked: {e}")),
        }
    }

    /// `recovery_started`, written before the first step acts.
    pub async fn write_ahead(&self, run: &Run) -> Option<String> {
        self.incident_counts.add(IncidentKind::RecoveryStarted);
        self.incident(Incident::new(
            IncidentKind::RecoveryStarted,
            IncidentSeverity::Warn,
            format!("{} recovery {} started", run.kind, run.id),
            json!({ "id": run.id, "type": run.kind, "started_at": run.started_at_ms, "before": run.before }),
        ))
        .await
    }

    /// `recovery_finished`, written once the run has its result.
    pub async fn write_finished(&self, outcome: &RecoveryOutcome) -> Option<String> {
        let severity = match outcome.result {
            RunResult::Recovered => IncidentSeverity::Info,
            RunResult::NotRecovered | RunResult::Interrupted => IncidentSeverity::Warn,
            RunResult::Failed => IncidentSeverity::Error,
        };
        self.incident_counts.add(IncidentKind::RecoveryFinished);
        self.incident(Incident::new(
            IncidentKind::RecoveryFinished,
            severity,
            format!("{} recovery {} finished: {}", outcome.kind, outcome.id, outcome.result.as_str()),
            outcome_json(outcome),
        ))
        .await
    }
}

impl RecoveryCore {
    /// Writes `recovery_finished`; a failure of the incident log (now or for the write-ahead
    /// record) is added to the run's record as a failed `incident_log` step.
    pub async fn finish_with_incident(
        &self,
        mut outcome: RecoveryOutcome,
        write_ahead_error: Option<String>,
    ) -> RecoveryOutcome {
        let finished_error = self.write_finished(&outcome).await;
        for error in [write_ahead_error, finished_error].into_iter().flatten() {
            outcome.steps.push(StepRecord {
                name: "incident_log".to_owned(),
                status: StepStatus::Failed,
                duration_ms: 0.0,
                error: Some(error),
                detail: None,
            });
        }
        outcome
    }
}

/// The outcome as JSON, as `lastOutcome` and incident records show it.
pub fn outcome_json(outcome: &RecoveryOutcome) -> Value {
    // A memory run's before and after are pressure checks, named as the contract names them.
    let (before, after) =
        if outcome.kind == "memory" { ("pressure_before", "pressure_after") } else { ("before", "after") };
    let mut value = json!({
        "id": outcome.id,
        "type": outcome.kind,
        "started_at": outcome.started_at_ms,
        "finished_at": outcome.finished_at_ms,
        "result": outcome.result.as_str(),
        "steps": outcome.steps.iter().map(|s| json!({
            "name": s.name,
            "status": s.status.as_str(),
            "duration_ms": s.duration_ms,
            "error": s.error,
            "detail": s.detail,
        })).collect::<Vec<_>>(),
        "error": outcome.error.as_ref().map(|e| json!({ "step": e.step, "code": e.code, "message": e.message })),
        "cleanup_error": outcome.cleanup_error,
    });
    value[before] = outcome.before.clone().unwrap_or(Value::Null);
    value[after] = outcome.after.clone().unwrap_or(Value::Null);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn hook(f: impl Fn() -> HookFuture + Send + Sync + 'static) -> Arc<dyn Hook> {
        Arc::new(move |_: Option<&StepError>| f())
    }

    #[tokio::test]
    async fn steps_record_ok_failed_timed_out_skipped() {
        let mut run = Run::new("memory");
        let ok = hook(|| Box::pin(async { Ok(()) }));
        let fails = hook(|| Box::pin(async { Err("boom".to_owned()) }));
        let hangs = hook(|| Box::pin(futures::future::pending()));
        let panics = hook(|| Box::pin(async { panic!("bad hook") }));
        let t = Duration::from_millis(50);
        assert!(run.hook_step("a", Some(&ok), None, t).await.is_ok());
        let failed = run.hook_step("b", Some(&fails), None, t).await.unwrap_err();
        assert_eq!((failed.code, failed.message.as_str(), failed.step.as_str()), (ERR_STEP_FAILED, "boom", "b"));
        let timed_out = run.hook_step("c", Some(&hangs), None, t).await.unwrap_err();
        assert_eq!(timed_out.code, ERR_STEP_TIMEOUT);
        assert_eq!(run.hook_step("d", Some(&panics), None, t).await.unwrap_err().message, "the hook panicked");
        assert!(run.hook_step("e", None, None, t).await.is_ok());
        let statuses: Vec<_> = run.steps.iter().map(|s| (s.name.as_str(), s.status)).collect();
        assert_eq!(
            statuses,
            [
                ("a", StepStatus::Ok),
                ("b", StepStatus::Failed),
                ("c", StepStatus::TimedOut),
                ("d", StepStatus::Failed),
                ("e", StepStatus::Skipped)
            ]
        );
        assert!(run.steps[2].duration_ms >= 50.0);
        let value = run.blocking_step("f", t, || Ok((7, Some(json!({ "x": 1 }))))).await.unwrap();
        assert_eq!(value, 7);
        assert_eq!(run.steps[5].detail, Some(json!({ "x": 1 })));
        let slow = run.blocking_step("g", t, || {
            std::thread::sleep(Duration::from_millis(200));
            Ok(((), None))
        });
        assert_eq!(slow.await.unwrap_err().code, ERR_STEP_TIMEOUT);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_join_one_run() {
        let core = Arc::new(RecoveryCore::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let calls = (0..50).map(|_| {
            let core = core.clone();
            let runs = runs.clone();
            tokio::spawn(async move {
                core.single_flight("memory", || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Run::new("memory").finish(RunResult::Recovered, None, None)
                })
                .await
            })
        });
        let outcomes = futures::future::join_all(calls).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let first = outcomes[0].as_ref().unwrap().id.clone();
        assert!(outcomes.iter().all(|o| o.as_ref().unwrap().id == first));
        assert!(!core.busy());
        assert_eq!(core.last_outcome().unwrap().id, first);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_of_different_kinds_never_overlap() {
        let core = Arc::new(RecoveryCore::default());
        let active = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let calls = ["out_of_memory", "device_lost", "out_of_memory", "device_lost"].map(|kind| {
            let (core, active, overlaps) = (core.clone(), active.clone(), overlaps.clone());
            tokio::spawn(async move {
                core.single_flight(kind, || async move {
                    if active.fetch_add(1, Ordering::SeqCst) > 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    active.fetch_sub(1, Ordering::SeqCst);
                    Run::new(kind).finish(RunResult::Recovered, None, None)
                })
                .await
                .kind
            })
        });
        let kinds: Vec<_> = futures::future::join_all(calls).await.into_iter().map(|k| k.unwrap()).collect();
        assert_eq!(kinds, ["out_of_memory", "device_lost", "out_of_memory", "device_lost"]);
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_dropped_run_frees_the_slot() {
        let core = RecoveryCore::default();
        let never = core.single_flight("memory", || futures::future::pending::<RecoveryOutcome>());
        assert!(tokio::time::timeout(Duration::from_millis(20), never).await.is_err());
        assert!(!core.busy());
        let outcome = core
            .single_flight("memory", || async { Run::new("memory").finish(RunResult::NotRecovered, None, None) })
            .await;
        assert_eq!(outcome.result, RunResult::NotRecovered);
    }

    struct Recording(Mutex<Vec<String>>);
    impl IncidentSink for Recording {
        fn record(&self, incident: Incident) -> Result<u64, String> {
            let mut all = self.0.lock().unwrap();
            all.push(incident.kind);
            Ok(all.len() as u64)
        }
    }

    #[tokio::test]
    async fn incidents_bracket_the_run() {
        let core = RecoveryCore::default();
        let sink = Arc::new(Recording(Mutex::new(Vec::new())));
        core.set_incident_sink(Some(sink.clone()));
        let run = Run::new("memory");
        assert_eq!(core.write_ahead(&run).await, None);
        let outcome = run.finish(RunResult::Recovered, None, None);
        assert_eq!(core.write_finished(&outcome).await, None);
        assert_eq!(*sink.0.lock().unwrap(), ["recovery_started", "recovery_finished"]);
        assert_eq!(outcome_json(&outcome)["result"], "recovered");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupt_abandons_the_wait_and_later_steps_and_spares_later_runs() {
        let core = Arc::new(RecoveryCore::default());
        let hangs = hook(|| Box::pin(futures::future::pending()));
        let long = Duration::from_secs(3600);
        let interrupter = {
            let core = core.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                core.interrupt();
            })
        };
        let mut run = core.new_run("memory");
        let error = run.hook_step("hangs", Some(&hangs), None, long).await.unwrap_err();
        interrupter.await.unwrap();
        assert_eq!((error.code, error.step.as_str()), (ERR_INTERRUPTED, "hangs"));
        assert_eq!(error.run_result(), RunResult::Interrupted);
        assert!(run.interrupted());
        // The rest of the run does not wait either.
        let blocking = run.blocking_step("blocking", long, || Ok(((), None))).await.unwrap_err();
        assert_eq!(blocking.code, ERR_INTERRUPTED);
        let statuses: Vec<_> = run.steps.iter().map(|s| (s.name.as_str(), s.status.as_str())).collect();
        assert_eq!(statuses, [("hangs", "interrupted"), ("blocking", "interrupted")]);
        let outcome = run.finish(error.run_result(), Some(error), None);
        assert_eq!(outcome_json(&outcome)["result"], "interrupted");

        // A run started after the interrupt runs normally; an uninterruptible one ignores it.
        let mut later = core.new_run("memory");
        let ok = hook(|| Box::pin(async { Ok(()) }));
        assert!(later.hook_step("ok", Some(&ok), None, long).await.is_ok());
        let mut plain = Run::new("memory");
        core.interrupt();
        assert!(plain.hook_step("ok", Some(&ok), None, long).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupt_abandons_blocking_work() {
        let core = Arc::new(RecoveryCore::default());
        let mut run = core.new_run("device_lost");
        let interrupter = {
            let core = core.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                core.interrupt();
            })
        };
        let slow = run.blocking_step("slow", Duration::from_secs(3600), || {
            std::thread::sleep(Duration::from_millis(1500));
            Ok(((), None))
        });
        let error = tokio::time::timeout(Duration::from_millis(1000), slow).await.expect("abandoned").unwrap_err();
        interrupter.await.unwrap();
        assert_eq!(error.code, ERR_INTERRUPTED);
    }
}
