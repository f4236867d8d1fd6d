//! Memory recovery, the requirements' flow: stop intake, clear the GPU cache, defragment,
//! verify; emergency cleanup when a step fails. The package adds what it can do itself:
//! returning freed native heap to the operating system.

use super::engine::{Hook, RecoveryCore, RecoveryOutcome, Run, RunResult, StepError};
use super::native_heap::release_native_heap;
use crate::monitors::memory::MemoryMonitor;
use crate::policy::pressure::MemoryPressure;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Default)]
pub struct MemoryHooks {
    pub clear_gpu_cache: Option<Arc<dyn Hook>>,
    pub defragment_memory: Option<Arc<dyn Hook>>,
    pub emergency_cleanup: Option<Arc<dyn Hook>>,
}

pub struct MemoryRecovery {
    monitor: Arc<MemoryMonitor>,
    hooks: MemoryHooks,
    step_timeout: Duration,
    pause_incoming: AtomicBool,
    core: RecoveryCore,
}

/// The part of a pressure check a recovery record keeps.
pub fn pressure_json(pressure: &MemoryPressure) -> Value {
    json!({
        "gpu_pressure": pressure.gpu_pressure,
        "system_pressure": pressure.system_pressure,
        "gpu_ratio": pressure.gpu_ratio,
        "system_ratio": pressure.system_ratio,
    })
}

impl MemoryRecovery {
    pub fn new(monitor: Arc<MemoryMonitor>, hooks: MemoryHooks, step_timeout: Duration) -> Self {
        MemoryRecovery {
            monitor,
            hooks,
            step_timeout,
            pause_incoming: AtomicBool::new(false),
            core: RecoveryCore::default(),
        }
    }

    pub fn core(&self) -> &RecoveryCore {
        &self.core
    }

    /// True while intake is stopped.
    pub fn pause_incoming(&self) -> bool {
        self.pause_incoming.load(Ordering::SeqCst)
    }

    /// Stops intake without a recovery (the supervisor does this for faults it cannot fix).
    pub fn pause(&self) {
        self.pause_incoming.store(true, Ordering::SeqCst);
    }

    /// An operator's override: reopens intake.
    pub fn resume(&self) {
        self.pause_incoming.store(false, Ordering::SeqCst);
    }

    async fn check_pressure(&self, run: &mut Run, name: &str) -> Result<MemoryPressure, StepError> {
        let monitor = self.monitor.clone();
        run.blocking_step(name, self.step_timeout, move || {
            let (pressure, _) = monitor.check_memory_pressure();
            let detail = pressure_json(&pressure);
            Ok((pressure, Some(detail)))
        })
        .await
    }

    /// Runs the flow, or joins the run in flight.
    pub async fn recover_from_pressure(self: &Arc<Self>) -> Arc<RecoveryOutcome> {
        let this = self.clone();
        self.core.single_flight("memory", move || async move { this.run().await }).await
    }

    async fn run(&self) -> RecoveryOutcome {
        // 1. Stop accepting new requests, before anything else acts.
        self.pause_incoming.store(true, Ordering::SeqCst);
        let mut run = self.core.new_run("memory");
        run.record("pause_intake", super::engine::StepStatus::Ok, 0.0, None, None);
        if let Ok(before) = self.check_pressure(&mut run, "measure").await {
            run.before = Some(pressure_json(&before));
        }
        let sink_error = self.core.write_ahead(&run).await;
        let outcome = match self.steps(&mut run).await {
            Ok(pressure) => {
                run.after = Some(pressure_json(&pressure));
                if pressure.gpu_pressure || pressure.system_pressure {
                    // Intake stays paused: the service is still under pressure.
                    run.finish(RunResult::NotRecovered, None, None)
                } else {
                    self.pause_incoming.store(false, Ordering::SeqCst);
                    run.finish(RunResult::Recovered, None, None)
                }
            }
            // Interrupted (the service is stopping): nothing more is started, not even cleanup.
            Err(error) if run.interrupted() => run.finish(error.run_result(), Some(error), None),
            Err(error) => {
                let cleanup = run
                    .hook_step(
                        "emergency_cleanup",
                        self.hooks.emergency_cleanup.as_ref(),
                        Some(&error),
                        self.step_timeout,
                    )
                    .await;
                run.finish(RunResult::Failed, Some(error), cleanup.err().map(|e| e.message))
            }
        };
        self.core.finish_with_incident(outcome, sink_error).await
    }

    async fn steps(&self, run: &mut Run) -> Result<MemoryPressure, StepError> {
        // 2. Clear the GPU cache (the worker's allocator), 3. defragment.
        run.hook_step("clear_gpu_cache", self.hooks.clear_gpu_cache.as_ref(), None, self.step_timeout).await?;
        run.hook_step("defragment_memory", self.hooks.defragment_memory.as_ref(), None, self.step_timeout).await?;
        // What the package can do itself: hand freed native heap back to the kernel.
        run.blocking_step("release_native_heap", self.step_timeout, || {
            let released = release_native_heap();
            Ok(((), Some(json!({ "released_bytes": released }))))
        })
        .await?;
        // 4. Verify.
        self.check_pressure(run, "verify").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::thresholds::MemoryThresholds;
    use crate::sampling::memory::MemorySampler;
    use crate::sampling::nvml_session::shared_session;
    use std::ffi::OsStr;
    use std::sync::Mutex;

    /// A monitor over a fake cgroup whose usage the test sets.
    fn monitor(dir: &std::path::Path, used_mib: u64) -> Arc<MemoryMonitor> {
        let write = |rel: &str, text: &str| {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("proc/self/cgroup", "0::/svc\n");
        write("proc/self/mountinfo", "24 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        write("sys/fs/cgroup/svc/memory.max", &format!("{}\n", 1024u64 << 20));
        write("sys/fs/cgroup/svc/memory.current", &format!("{}\n", used_mib << 20));
        write("sys/fs/cgroup/svc/memory.stat", "inactive_file 0\n");
        let sampler = MemorySampler::new(dir.to_owned(), shared_session(OsStr::new("/nonexistent/libnvidia-ml.so.1")));
        Arc::new(MemoryMonitor::new(sampler, MemoryThresholds::default()))
    }

    fn logging_hook(
        log: &Arc<Mutex<Vec<String>>>,
        name: &'static str,
        recovery_paused: Arc<Mutex<Option<Arc<MemoryRecovery>>>>,
    ) -> Arc<dyn Hook> {
        let log = log.clone();
        Arc::new(move |cause: Option<&StepError>| {
            let paused = recovery_paused.lock().unwrap().as_ref().map(|r| r.pause_incoming());
            log.lock().unwrap().push(format!("{name} paused={paused:?} cause={:?}", cause.map(|c| c.code)));
            Box::pin(async { Ok(()) }) as super::super::engine::HookFuture
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flow_order_and_intake() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let slot = Arc::new(Mutex::new(None));
        let hooks = MemoryHooks {
            clear_gpu_cache: Some(logging_hook(&log, "clear", slot.clone())),
            defragment_memory: Some(logging_hook(&log, "defrag", slot.clone())),
            emergency_cleanup: Some(logging_hook(&log, "cleanup", slot.clone())),
        };
        let recovery = Arc::new(MemoryRecovery::new(monitor(dir.path(), 100), hooks, Duration::from_secs(5)));
        *slot.lock().unwrap() = Some(recovery.clone());
        let outcome = recovery.recover_from_pressure().await;
        assert_eq!(outcome.result, RunResult::Recovered);
        assert_eq!(*log.lock().unwrap(), ["clear paused=Some(true) cause=None", "defrag paused=Some(true) cause=None"]);
        let names: Vec<_> = outcome.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["pause_intake", "measure", "clear_gpu_cache", "defragment_memory", "release_native_heap", "verify"]
        );
        assert!(!recovery.pause_incoming(), "intake reopens once pressure is gone");
        assert!(outcome.steps[4].detail.as_ref().unwrap()["released_bytes"].is_u64());
        *slot.lock().unwrap() = None;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pressure_that_stays_keeps_intake_paused() {
        let dir = tempfile::tempdir().unwrap();
        let recovery =
            Arc::new(MemoryRecovery::new(monitor(dir.path(), 1000), MemoryHooks::default(), Duration::from_secs(5)));
        let outcome = recovery.recover_from_pressure().await;
        assert_eq!(outcome.result, RunResult::NotRecovered);
        assert_eq!(outcome.after.as_ref().unwrap()["system_pressure"], true);
        assert!(recovery.pause_incoming());
        recovery.resume();
        assert!(!recovery.pause_incoming());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_step_runs_cleanup_and_reports_both() {
        let dir = tempfile::tempdir().unwrap();
        let cleanup_saw = Arc::new(Mutex::new(None));
        let saw = cleanup_saw.clone();
        let hooks = MemoryHooks {
            clear_gpu_cache: Some(Arc::new(|_: Option<&StepError>| {
                Box::pin(futures::future::pending()) as super::super::engine::HookFuture
            })),
            defragment_memory: None,
            emergency_cleanup: Some(Arc::new(move |cause: Option<&StepError>| {
                *saw.lock().unwrap() = cause.cloned();
                Box::pin(async { Err("cleanup broke".to_owned()) }) as super::super::engine::HookFuture
            })),
        };
        let recovery = Arc::new(MemoryRecovery::new(monitor(dir.path(), 100), hooks, Duration::from_millis(100)));
        let outcome = recovery.recover_from_pressure().await;
        assert_eq!(outcome.result, RunResult::Failed);
        let error = outcome.error.clone().unwrap();
        assert_eq!((error.code, error.step.as_str()), ("ERR_STEP_TIMEOUT", "clear_gpu_cache"));
        assert_eq!(cleanup_saw.lock().unwrap().clone(), Some(error));
        assert_eq!(outcome.cleanup_error.as_deref(), Some("cleanup broke"));
        assert!(recovery.pause_incoming(), "a failed recovery leaves intake paused");
        let statuses: Vec<_> = outcome.steps.iter().map(|s| (s.name.as_str(), s.status.as_str())).collect();
        assert_eq!(statuses[2..], [("clear_gpu_cache", "timed_out"), ("emergency_cleanup", "failed")]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_run_ends_interrupted_without_cleanup_and_keeps_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let cleaned = Arc::new(Mutex::new(false));
        let flag = cleaned.clone();
        let hooks = MemoryHooks {
            clear_gpu_cache: Some(Arc::new(|_: Option<&StepError>| {
                Box::pin(futures::future::pending()) as super::super::engine::HookFuture
            })),
            defragment_memory: None,
            emergency_cleanup: Some(Arc::new(move |_: Option<&StepError>| {
                *flag.lock().unwrap() = true;
                Box::pin(async { Ok(()) }) as super::super::engine::HookFuture
            })),
        };
        let recovery = Arc::new(MemoryRecovery::new(monitor(dir.path(), 100), hooks, Duration::from_secs(3600)));
        let running = tokio::spawn({
            let recovery = recovery.clone();
            async move { recovery.recover_from_pressure().await }
        });
        while !recovery.core().busy() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        recovery.core().interrupt();
        let outcome = tokio::time::timeout(Duration::from_secs(10), running).await.expect("abandoned").unwrap();
        assert_eq!(outcome.result, RunResult::Interrupted);
        assert_eq!(
            outcome.error.as_ref().map(|e| (e.code, e.step.as_str())),
            Some(("ERR_INTERRUPTED", "clear_gpu_cache"))
        );
        assert!(!*cleaned.lock().unwrap(), "nothing new starts once interrupted");
        assert_eq!(recovery.core().last_outcome().unwrap().result, RunResult::Interrupted);
    }
}
