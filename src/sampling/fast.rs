//! The fast sample: per-GPU used/total memory and host-or-cgroup memory, cheap enough to
//! take every second (`fastSampleMs`) between full checks. The rule that turns samples into
//! a confirmed threshold crossing is policy (`policy::crossing`).
//!
//! One sample is one NVML memory query per device (no name, UUID, temperature or ECC), the
//! cgroup's usage files (its limit is cached for [`super::memory::LIMIT_REREAD`]) and
//! `/proc/meminfo`; no PSI. The readers are the ones the full check uses.

use super::gpu::{sample_gpus, GpuDetail};
use super::memory::{MemoryLimitSource, MemorySampler};

/// One GPU's memory in a fast sample.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuMemorySample {
    pub index: u32,
    pub used: u64,
    pub total: u64,
    /// NVML reports the device lost: `used` and `total` are 0.
    pub lost: bool,
    /// Why the memory could not be read (other than lost): `used` and `total` are 0.
    pub error: Option<String>,
}

impl GpuMemorySample {
    /// `(used, total)` when the reading is usable.
    pub fn reading(&self) -> Option<(u64, u64)> {
        (!self.lost && self.error.is_none() && self.total > 0).then_some((self.used, self.total))
    }
}

/// Host or cgroup memory in a fast sample, whichever binds (as in the full check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemorySample {
    pub used: u64,
    pub total: u64,
    pub source: MemoryLimitSource,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FastSample {
    /// When the sample was taken, on the caller's clock (a monotonic one suits the forecast).
    pub at_ms: f64,
    pub gpus: Vec<GpuMemorySample>,
    /// Why no GPU could be read at all (no library, no driver, no device).
    pub gpu_error: Option<String>,
    /// `None` when neither the cgroup nor `/proc/meminfo` could be read (`host_error` says why).
    pub host: Option<HostMemorySample>,
    pub host_error: Option<String>,
}

/// A memory figure the fast sample watches: one GPU, or host/cgroup memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemorySignal {
    Gpu(u32),
    Host,
}

impl MemorySignal {
    /// The GPU index, `None` for host/cgroup memory (the `device` of an issue).
    pub fn device(self) -> Option<u32> {
        match self {
            MemorySignal::Gpu(index) => Some(index),
            MemorySignal::Host => None,
        }
    }
}

impl FastSample {
    /// Every signal in the sample with its `(used, total)`, `None` where it could not be read.
    pub fn readings(&self) -> Vec<(MemorySignal, Option<(u64, u64)>)> {
        let gpus = self.gpus.iter().map(|g| (MemorySignal::Gpu(g.index), g.reading()));
        let host = (MemorySignal::Host, self.host.filter(|h| h.total > 0).map(|h| (h.used, h.total)));
        gpus.chain(std::iter::once(host)).collect()
    }
}

/// Takes one fast sample now, stamped `at_ms`. Never fails: what could not be read is
/// reported in the result.
pub fn take_fast_sample(sampler: &MemorySampler, at_ms: f64) -> FastSample {
    let gpu = sample_gpus(sampler.nvml(), GpuDetail::MemoryOnly);
    let gpus = gpu
        .devices
        .into_iter()
        .map(|d| GpuMemorySample { index: d.index, used: d.used, total: d.total, lost: d.lost, error: d.error })
        .collect();
    let system = sampler.sample_system_memory();
    let host = (system.total > 0).then_some(HostMemorySample {
        used: system.used,
        total: system.total,
        source: system.source,
    });
    let host_error = if host.is_some() { None } else { system.error.or(Some("host memory reads 0 bytes".to_owned())) };
    FastSample { at_ms, gpus, gpu_error: gpu.error, host, host_error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::crossing::{CrossingChange, CrossingDetector};
    use crate::policy::thresholds::MemoryThresholds;
    use crate::sampling::nvml_session::shared_session;
    use std::path::Path;

    const GIB: u64 = 1 << 30;

    /// The stand-in libnvidia-ml.so that cargo builds next to this test binary.
    fn standin() -> std::path::PathBuf {
        let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
        let path = deps.join("libnvml_standin.so");
        assert!(path.exists(), "stand-in not built at {}", path.display());
        path
    }

    use crate::sampling::test_files::write;

    const FAST_CHILD_ENV: &str = "HPC_HEALTH_TEST_FAST_SAMPLE_CHILD";

    /// Run in a process of its own by the test below: the stand-in's state file is named by
    /// a process-wide variable that another test in this binary sets too.
    #[test]
    #[ignore = "run by fast_sample_reads_the_standin_and_a_cgroup in a process of its own"]
    fn fast_sample_child() {
        let Some(dir) = std::env::var_os(FAST_CHILD_ENV) else { return };
        let dir = Path::new(&dir);
        let state = dir.join("state.json");
        std::env::set_var("HPC_HEALTH_STANDIN_STATE", &state);
        let gpu = |used: u64| format!(r#"{{"memory_total":{},"memory_used":{}}}"#, 80 * GIB, used);
        write(dir, "state.json", &format!(r#"{{"devices":[{},{}]}}"#, gpu(40 * GIB), gpu(79 * GIB)));
        let root = dir.join("root");
        write(&root, "proc/self/cgroup", "0::/svc\n");
        write(&root, "proc/self/mountinfo", "24 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        write(&root, "sys/fs/cgroup/svc/memory.max", "1073741824\n");
        write(&root, "sys/fs/cgroup/svc/memory.current", "943718400\n");
        write(&root, "sys/fs/cgroup/svc/memory.stat", "inactive_file 104857600\n");
        let sampler = MemorySampler::new(root.clone(), shared_session(standin().as_os_str()));

        let s = take_fast_sample(&sampler, 1234.0);
        assert_eq!(s.at_ms, 1234.0);
        assert_eq!(s.gpu_error, None);
        let gpus: Vec<_> = s.gpus.iter().map(|g| (g.index, g.used, g.total, g.lost)).collect();
        assert_eq!(gpus, vec![(0, 40 * GIB, 80 * GIB, false), (1, 79 * GIB, 80 * GIB, false)]);
        assert_eq!(s.host, Some(HostMemorySample { used: 800 << 20, total: GIB, source: MemoryLimitSource::Cgroup }));

        // The same figures the full check reads.
        let full = sampler.sample_memory_metrics();
        assert_eq!((full.system_used, full.system_total), (800 << 20, GIB));
        assert_eq!(full.gpus.iter().map(|g| g.used).collect::<Vec<_>>(), vec![40 * GIB, 79 * GIB]);

        // Two samples above 85% on GPU 1 and the cgroup start an episode; GPU 0 stays quiet.
        let thresholds = MemoryThresholds { gpu_memory: 0.85, system_memory: 0.7, ..Default::default() };
        let mut detector = CrossingDetector::new();
        assert_eq!(detector.observe_sample(&s, &thresholds), vec![]);
        let second = take_fast_sample(&sampler, 2234.0);
        let crossed: Vec<_> = detector.observe_sample(&second, &thresholds).iter().map(signal_of).collect();
        assert_eq!(crossed, vec![MemorySignal::Gpu(1), MemorySignal::Host]);

        // A lost device is marked on its own; a failed memory query carries its reason.
        let lost = r#"{"memory_total":85899345920,"lost":true}"#;
        let failing = r#"{"errors":{"memory_info":999}}"#;
        write(dir, "state.json", &format!(r#"{{"devices":[{lost},{failing}]}}"#));
        let s = take_fast_sample(&sampler, 3234.0);
        assert!(s.gpus[0].lost && s.gpus[0].reading().is_none());
        assert!(!s.gpus[1].lost && s.gpus[1].error.is_some() && s.gpus[1].reading().is_none(), "{s:?}");

        // Only memory is asked for: a device whose name and UUID queries fail (which the
        // full check reports) still gives its memory to the fast sample.
        let nameless = r#"{"memory_used":1073741824,"errors":{"name":999,"uuid":999}}"#;
        write(dir, "state.json", &format!(r#"{{"devices":[{nameless}]}}"#));
        let s = take_fast_sample(&sampler, 3500.0);
        assert_eq!(s.gpus[0].reading(), Some((GIB, 80 * GIB)), "{s:?}");
        assert!(sampler.sample_memory_metrics().gpus[0].error.is_some(), "the full check asks for the name");

        // No devices at all: the reason, and host memory still read.
        write(dir, "state.json", r#"{"devices":[]}"#);
        let s = take_fast_sample(&sampler, 4234.0);
        assert!(s.gpus.is_empty());
        assert!(s.gpu_error.as_deref().unwrap().contains("no GPU"), "{s:?}");
        assert!(s.host.is_some());

        // Timing for the report, not asserted: the cost of one fast sample on two devices.
        write(dir, "state.json", &format!(r#"{{"devices":[{},{}]}}"#, gpu(40 * GIB), gpu(79 * GIB)));
        let n = 2000;
        let started = std::time::Instant::now();
        for i in 0..n {
            std::hint::black_box(take_fast_sample(&sampler, i as f64));
        }
        println!("fast sample: {:.1} us each over {n}", started.elapsed().as_secs_f64() * 1e6 / n as f64);
    }

    fn signal_of(change: &CrossingChange) -> MemorySignal {
        match *change {
            CrossingChange::Crossed { signal, .. } | CrossingChange::Cleared { signal, .. } => signal,
        }
    }

    #[test]
    fn fast_sample_reads_the_standin_and_a_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sampling::fast::tests::fast_sample_child",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(FAST_CHILD_ENV, dir.path())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&child.stdout);
        assert!(child.status.success(), "{out}{}", String::from_utf8_lossy(&child.stderr));
        assert!(out.contains("1 passed"), "the child ran no test: {out}");
    }
}
