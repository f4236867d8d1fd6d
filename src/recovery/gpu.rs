//! GPU recovery: out-of-memory (empty the allocator's cache, reset its peak statistics,
//! verify memory per device) and lost devices (re-open NVML, wait for every known device by
//! UUID, re-initialise the worker, verify).

use super::engine::{Hook, RecoveryCore, RecoveryOutcome, Run, RunResult, StepError, StepStatus};
use crate::monitors::gpu_health::GpuHealthMonitor;
use crate::policy::issues::{Action, Severity};
use crate::sampling::duration_ms;
use crate::sampling::gpu::{sample_gpus, GpuDetail, GpuSample};
use crate::sampling::nvml_session::{describe_nvml_error, NvmlSession};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct GpuHooks {
    pub empty_cache: Option<Arc<dyn Hook>>,
    pub reset_peak_memory_stats: Option<Arc<dyn Hook>>,
    pub reinitialize: Option<Arc<dyn Hook>>,
}

/// First and longest pause between polls while waiting for devices to return.
pub const DEVICE_POLL_FIRST: Duration = Duration::from_millis(50);
pub const DEVICE_POLL_MAX: Duration = Duration::from_secs(1);

pub struct GpuRecovery {
    monitor: Arc<GpuHealthMonitor>,
    hooks: GpuHooks,
    step_timeout: Duration,
    device_wait: Duration,
    /// A device's `used / total` must be below this after an out-of-memory recovery.
    memory_threshold: f64,
    core: RecoveryCore,
}

/// Per-device memory as a recovery record keeps it.
fn memory_json(sample: &GpuSample) -> Value {
    json!({
        "gpu_available": sample.available,
        "devices": sample.devices.iter().map(|d| json!({
            "index": d.index, "uuid": d.uuid, "used": d.used, "total": d.total, "lost": d.lost,
        })).collect::<Vec<_>>(),
    })
}

/// What an out-of-memory recovery verifies: every device's memory below the threshold, and
/// none of the issues clearing the cache is for (`Action::ClearCache`, e.g.
/// `FRAGMENTATION_HIGH`) still there: a recovery after which its issue stays is not one.
struct OomCheck {
    problems: Vec<String>,
    /// Per-device memory and the problems, as the run's `after` keeps them.
    json: Value,
}

fn check_after_oom(monitor: &GpuHealthMonitor, memory_threshold: f64) -> OomCheck {
    let health = monitor.check_gpu_health_with(GpuDetail::Memory);
    let sample = GpuSample {
        available: health.gpu_available,
        error: health.gpu_error.clone(),
        devices: health.devices.iter().map(|d| d.sample.clone()).collect(),
    };
    let mut problems: Vec<String> = sample
        .devices
        .iter()
        .filter(|d| d.lost || d.total == 0 || d.used as f64 / d.total as f64 >= memory_threshold)
        .map(|d| format!("GPU {}: {} of {} bytes in use", d.index, d.used, d.total))
        .collect();
    problems.extend(
        health
            .issues
            .iter()
            .filter(|i| i.severity == Severity::Fail && i.action == Action::ClearCache)
            .map(|i| format!("{} still present: {}", i.code.as_str(), i.message)),
    );
    let mut json = memory_json(&sample);
    json["problems"] = json!(problems);
    OomCheck { problems, json }
}

/// The verdict of `verify_gpu_state`, with the reason when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuStateCheck {
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Every device known before answers by UUID and is not lost; the reasons otherwise.
fn missing_devices(session: &NvmlSession, uuids: &[String]) -> Vec<String> {
    let result = session.with_nvml(|nvml| {
        uuids
            .iter()
            .filter_map(|uuid| match nvml.device_by_uuid(uuid.as_str()).and_then(|d| d.memory_info().map(|_| ())) {
                Ok(()) => None,
                Err(e) => Some(format!("{uuid}: {}", describe_nvml_error(&e))),
            })
            .collect::<Vec<_>>()
    });
    result.unwrap_or_else(|reason| vec![format!("NVML: {reason}")])
}

/// Every device NVML has shown answers again by UUID, none is lost, and GPU health has no
/// `fail` issue (which covers fewer devices than `expectedGpus`).
pub fn verify_gpu_state(monitor: &GpuHealthMonitor) -> GpuStateCheck {
    let health = monitor.check_gpu_health();
    let mut problems: Vec<String> = health
        .issues
        .iter()
        .filter(|i| i.severity == crate::policy::issues::Severity::Fail)
        .map(|i| format!("{}: {}", i.code.as_str(), i.message))
        .collect();
    let known: Vec<String> = monitor.session().known_devices().into_iter().map(|d| d.uuid).collect();
    problems.extend(missing_devices(monitor.session(), &known));
    GpuStateCheck { ok: problems.is_empty(), problems }
}

impl GpuRecovery {
    pub fn new(
        monitor: Arc<GpuHealthMonitor>,
        hooks: GpuHooks,
        step_timeout: Duration,
        device_wait: Duration,
        memory_threshold: f64,
    ) -> Self {
        GpuRecovery { monitor, hooks, step_timeout, device_wait, memory_threshold, core: RecoveryCore::default() }
    }

    pub fn core(&self) -> &RecoveryCore {
        &self.core
    }

    /// `out_of_memory` and `device_lost` run their flows; any other kind is `None`.
    pub async fn handle_gpu_error(self: &Arc<Self>, kind: &str) -> Option<Arc<RecoveryOutcome>> {
        match kind {
            "out_of_memory" => Some(self.recover_from_oom().await),
            "device_lost" => Some(self.reinitialize_gpu().await),
            _ => None,
        }
    }

    pub async fn recover_from_oom(self: &Arc<Self>) -> Arc<RecoveryOutcome> {
        let this = self.clone();
        self.core.single_flight("out_of_memory", move || async move { this.run_oom().await }).await
    }

    pub async fn reinitialize_gpu(self: &Arc<Self>) -> Arc<RecoveryOutcome> {
        let this = self.clone();
        self.core.single_flight("device_lost", move || async move { this.run_reinitialize().await }).await
    }

    pub fn verify_gpu_state(&self) -> GpuStateCheck {
        verify_gpu_state(&self.monitor)
    }

    async fn verify_state_step(&self, run: &mut Run) -> Result<GpuStateCheck, StepError> {
        let monitor = self.monitor.clone();
        run.blocking_step("verify", self.step_timeout, move || {
            let check = verify_gpu_state(&monitor);
            let detail = json!({ "ok": check.ok, "problems": check.problems });
            Ok((check, Some(detail)))
        })
        .await
    }

    async fn sample_memory(&self, run: &mut Run, name: &str) -> Result<GpuSample, StepError> {
        let session = self.monitor.session().clone();
        run.blocking_step(name, self.step_timeout, move || {
            let sample = sample_gpus(&session, GpuDetail::Memory);
            let detail = memory_json(&sample);
            Ok((sample, Some(detail)))
        })
        .await
    }

    async fn run_oom(&self) -> RecoveryOutcome {
        let mut run = self.core.new_run("out_of_memory");
        if let Ok(before) = self.sample_memory(&mut run, "measure").await {
            run.before = Some(memory_json(&before));
        }
        let sink_error = self.core.write_ahead(&run).await;
        let outcome = match self.oom_steps(&mut run).await {
            Ok(after) => {
                let result = if after.problems.is_empty() { RunResult::Recovered } else { RunResult::NotRecovered };
                run.after = Some(after.json);
                run.finish(result, None, None)
            }
            Err(error) => run.finish(error.run_result(), Some(error), None),
        };
        self.core.finish_with_incident(outcome, sink_error).await
    }

    async fn oom_steps(&self, run: &mut Run) -> Result<OomCheck, StepError> {
        run.hook_step("empty_cache", self.hooks.empty_cache.as_ref(), None, self.step_timeout).await?;
        run.hook_step("reset_peak_memory_stats", self.hooks.reset_peak_memory_stats.as_ref(), None, self.step_timeout)
            .await?;
        let (monitor, threshold) = (self.monitor.clone(), self.memory_threshold);
        run.blocking_step("verify_memory", self.step_timeout, move || {
            let check = check_after_oom(&monitor, threshold);
            let detail = check.json.clone();
            Ok((check, Some(detail)))
        })
        .await
    }

    async fn run_reinitialize(&self) -> RecoveryOutcome {
        let mut run = self.core.new_run("device_lost");
        let session = self.monitor.session().clone();
        let known: Vec<String> = session.known_devices().into_iter().map(|d| d.uuid).collect();
        run.before = Some(json!({ "known_devices": known }));
        let sink_error = self.core.write_ahead(&run).await;
        let outcome = match self.reinitialize_steps(&mut run, &session, &known).await {
            Ok(Some(check)) => {
                run.after = Some(json!({ "ok": check.ok, "problems": check.problems }));
                run.finish(if check.ok { RunResult::Recovered } else { RunResult::NotRecovered }, None, None)
            }
            // The devices did not come back within deviceWaitMs.
            Ok(None) => run.finish(RunResult::NotRecovered, None, None),
            Err(error) => run.finish(error.run_result(), Some(error), None),
        };
        self.core.finish_with_incident(outcome, sink_error).await
    }

    async fn reinitialize_steps(
        &self,
        run: &mut Run,
        session: &Arc<NvmlSession>,
        known: &[String],
    ) -> Result<Option<GpuStateCheck>, StepError> {
        // Handles of a lost device stay stale until NVML is initialised again.
        let reopen = session.clone();
        run.blocking_step("reopen_nvml", self.step_timeout, move || {
            reopen.reopen().map(|()| ((), Some(json!({ "generation": reopen.generation() }))))
        })
        .await?;
        if !self.wait_for_devices(run, session, known).await? {
            return Ok(None);
        }
        run.hook_step("reinitialize", self.hooks.reinitialize.as_ref(), None, self.step_timeout).await?;
        self.verify_state_step(run).await.map(Some)
    }

    /// Polls with backoff until every known UUID answers (`true`) or `device_wait` passes
    /// (`false`); an interrupt abandons the wait at once.
    async fn wait_for_devices(
        &self,
        run: &mut Run,
        session: &Arc<NvmlSession>,
        known: &[String],
    ) -> Result<bool, StepError> {
        const STEP: &str = "wait_for_devices";
        let started = Instant::now();
        let mut pause = DEVICE_POLL_FIRST;
        loop {
            let (probe, uuids) = (session.clone(), known.to_vec());
            let probe = tokio::task::spawn_blocking(move || missing_devices(&probe, &uuids));
            let Some(missing) = run.unless_interrupted(probe).await else {
                return Err(self.interrupted_wait(run, started));
            };
            let missing = missing.unwrap_or_else(|e| vec![format!("probe panicked: {e}")]);
            let elapsed = started.elapsed();
            if missing.is_empty() {
                let detail = json!({ "devices": known, "waited_ms": elapsed.as_millis() as u64 });
                run.record(STEP, StepStatus::Ok, duration_ms(elapsed), None, Some(detail));
                return Ok(true);
            }
            if elapsed >= self.device_wait {
                let error = format!("not back within {} ms: {}", self.device_wait.as_millis(), missing.join("; "));
                run.record(STEP, StepStatus::TimedOut, duration_ms(elapsed), Some(error), None);
                return Ok(false);
            }
            let nap = tokio::time::sleep(pause.min(self.device_wait.saturating_sub(elapsed)));
            if run.unless_interrupted(nap).await.is_none() {
                return Err(self.interrupted_wait(run, started));
            }
            pause = (pause * 2).min(DEVICE_POLL_MAX);
        }
    }

    fn interrupted_wait(&self, run: &mut Run, started: Instant) -> StepError {
        let error = StepError::interrupted("wait_for_devices");
        let elapsed = duration_ms(started.elapsed());
        run.record(&error.step, error.status(), elapsed, Some(error.message.clone()), None);
        error
    }
}
