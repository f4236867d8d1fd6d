//! One memory sample of the whole machine as this process sees it: host RAM, the cgroup
//! limit that binds it, PSI and every GPU.

use super::cgroup::{
    locate_memory_cgroup, read_tightest_limit, read_working_set, CgroupError, CgroupLocation, CgroupVersion,
    TightestLimit,
};
use super::gpu::{sample_gpus, GpuDetail, GpuDeviceSample};
use super::host_memory::{sample_host_memory, HostMemory};
use super::nvml_session::NvmlSession;
use super::psi::{read_memory_psi, MemoryPsi};
use super::unix_time_ms;
use crate::sync::lock;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimitSource {
    Host,
    Cgroup,
}

impl MemoryLimitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryLimitSource::Host => "host",
            MemoryLimitSource::Cgroup => "cgroup",
        }
    }
}

/// What the cgroup reading gave, for operators who want to see why a limit applies.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupReport {
    pub version: Option<CgroupVersion>,
    pub path: Option<String>,
    pub limit: Option<u64>,
    /// Why the cgroup could not be read; the host's figures are used then.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryMetrics {
    pub timestamp_ms: f64,
    pub gpu_used: u64,
    pub gpu_total: u64,
    pub system_used: u64,
    pub system_total: u64,
    /// Why host memory could not be read (both system figures are then 0).
    pub system_error: Option<String>,
    pub memory_limit_source: MemoryLimitSource,
    pub psi: Option<MemoryPsi>,
    pub gpu_available: bool,
    pub gpu_error: Option<String>,
    pub gpus: Vec<GpuDeviceSample>,
    pub cgroup: Option<CgroupReport>,
}

/// Host or cgroup memory, whichever binds (see [`MemorySampler::sample_system_memory`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SystemMemory {
    pub used: u64,
    pub total: u64,
    pub source: MemoryLimitSource,
    /// Why host memory could not be read.
    pub error: Option<String>,
    pub cgroup: Option<CgroupReport>,
}

/// Samples memory for one monitor. Cheap to share between threads.
pub struct MemorySampler {
    root: PathBuf,
    nvml: Arc<NvmlSession>,
    cgroup: Mutex<CgroupCache>,
}

/// Limits change only when an operator changes them, and reading every level costs a file
/// read each; usage changes all the time and is read on every sample.
pub const LIMIT_REREAD: Duration = Duration::from_secs(1);

#[derive(Default)]
struct CgroupCache {
    /// Found once; found again only when reading fails (the process moved).
    location: Option<CgroupLocation>,
    /// The tightest limit and when it was read.
    limit: Option<(Instant, Option<TightestLimit>)>,
}

impl MemorySampler {
    pub fn new(root: PathBuf, nvml: Arc<NvmlSession>) -> Self {
        MemorySampler { root, nvml, cgroup: Mutex::new(CgroupCache::default()) }
    }

    pub fn nvml(&self) -> &Arc<NvmlSession> {
        &self.nvml
    }

    /// The filesystem root the samples read (`/` but in tests).
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Takes one sample now. Never fails: what could not be read is reported in the result.
    pub fn sample_memory_metrics(&self) -> MemoryMetrics {
        let timestamp_ms = unix_time_ms();
        let system = self.sample_system_memory();
        // PSI is advisory: a file that will not parse is reported as absent, not as an error.
        let psi = read_memory_psi(&self.root).ok().flatten();
        let gpu = sample_gpus(&self.nvml, GpuDetail::Memory);
        let usable = gpu.devices.iter().filter(|d| !d.lost);
        let (gpu_used, gpu_total) = usable.fold((0, 0), |(u, t), d| (u + d.used, t + d.total));
        MemoryMetrics {
            timestamp_ms,
            gpu_used,
            gpu_total,
            system_used: system.used,
            system_total: system.total,
            system_error: system.error,
            memory_limit_source: system.source,
            psi,
            gpu_available: gpu.available,
            gpu_error: gpu.error,
            gpus: gpu.devices,
            cgroup: system.cgroup,
        }
    }

    /// Host or cgroup memory now, whichever binds: the cgroup's working set against its
    /// tightest limit where that limit is below the RAM there is, else MemTotal − MemAvailable.
    /// Never fails: with neither readable, both figures are 0 and `error` says why.
    pub fn sample_system_memory(&self) -> SystemMemory {
        let (host, error) = match sample_host_memory() {
            Ok(host) => (host, None),
            Err(error) => (HostMemory { total: 0, available: 0 }, Some(error)),
        };
        let cgroup = self.sample_cgroup();
        let (total, used, source) = match &cgroup {
            // A limit counts where it is below the RAM there is (or RAM could not be read).
            Some((Some(limit), Some(working_set), _)) if host.total == 0 || *limit < host.total => {
                (*limit, *working_set, MemoryLimitSource::Cgroup)
            }
            _ => (host.total, host.used(), MemoryLimitSource::Host),
        };
        SystemMemory { used, total, source, error, cgroup: cgroup.map(|(_, _, report)| report) }
    }

    /// `(limit, working_set, report)`, or `None` when the process is in no memory cgroup.
    fn sample_cgroup(&self) -> Option<(Option<u64>, Option<u64>, CgroupReport)> {
        let mut cache = lock(&self.cgroup);
        // A failure may mean the process moved to another cgroup: look it up once more.
        for attempt in 0..2 {
            match self.read_cgroup(&mut cache) {
                Ok(None) => return None,
                Ok(Some((location, limit, working_set))) => {
                    let report = CgroupReport {
                        version: Some(location.version),
                        path: Some(location.cgroup_path.clone()),
                        limit,
                        error: None,
                    };
                    return Some((limit, working_set, report));
                }
                Err(error) => {
                    let location = cache.location.take();
                    cache.limit = None;
                    if attempt == 1 || location.is_none() {
                        return Some((None, None, failed_report(location.as_ref(), error.to_string())));
                    }
                }
            }
        }
        unreachable!("the second attempt always returns")
    }

    /// Reads usage now, limits when the cached ones are older than [`LIMIT_REREAD`].
    #[allow(clippy::type_complexity)]
    fn read_cgroup<'c>(
        &self,
        cache: &'c mut CgroupCache,
    ) -> Result<Option<(&'c CgroupLocation, Option<u64>, Option<u64>)>, CgroupError> {
        if cache.location.is_none() {
            match locate_memory_cgroup(&self.root)? {
                Some(location) => cache.location = Some(location),
                None => return Ok(None),
            }
        }
        let location = cache.location.as_ref().expect("located above");
        let limit = match &cache.limit {
            Some((read_at, limit)) if read_at.elapsed() < LIMIT_REREAD => limit.clone(),
            _ => {
                let limit = read_tightest_limit(location)?;
                cache.limit = Some((Instant::now(), limit.clone()));
                limit
            }
        };
        let working_set = limit.as_ref().map(|t| read_working_set(location.version, &t.dir)).transpose()?;
        Ok(Some((location, limit.map(|t| t.limit), working_set)))
    }
}

fn failed_report(location: Option<&CgroupLocation>, error: String) -> CgroupReport {
    CgroupReport {
        version: location.map(|l| l.version),
        path: location.map(|l| l.cgroup_path.clone()),
        limit: None,
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::nvml_session::shared_session;
    use std::ffi::OsStr;
    use std::fs;

    fn sampler_at(root: &std::path::Path) -> MemorySampler {
        MemorySampler::new(root.to_owned(), shared_session(OsStr::new("/nonexistent/libnvidia-ml.so.1")))
    }

    use crate::sampling::test_files::write;

    const MOUNTINFO: &str = "24 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";

    #[test]
    fn cgroup_limit_below_host_is_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/self/cgroup", "0::/svc\n");
        write(root, "proc/self/mountinfo", MOUNTINFO);
        write(root, "sys/fs/cgroup/svc/memory.max", "536870912\n");
        write(root, "sys/fs/cgroup/svc/memory.current", "482344960\n");
        write(root, "sys/fs/cgroup/svc/memory.stat", "inactive_file 10485760\n");
        write(
            root,
            "proc/pressure/memory",
            "some avg10=2.50 avg60=0 avg300=0 total=1\nfull avg10=1.00 avg60=0 avg300=0 total=1\n",
        );
        let metrics = sampler_at(root).sample_memory_metrics();
        assert_eq!(metrics.system_total, 512 << 20);
        assert_eq!(metrics.system_used, 450 << 20);
        assert_eq!(metrics.memory_limit_source, MemoryLimitSource::Cgroup);
        assert_eq!(metrics.psi, Some(MemoryPsi { some_avg10: 2.5, full_avg10: 1.0 }));
        assert!(!metrics.gpu_available);
        assert!(metrics.gpu_error.as_deref().unwrap().contains("could not be loaded"));
        assert_eq!((metrics.gpu_used, metrics.gpu_total), (0, 0));
        let report = metrics.cgroup.unwrap();
        assert_eq!(report.version, Some(CgroupVersion::V2));
        assert_eq!(report.limit, Some(512 << 20));
    }

    #[test]
    fn limit_above_host_memory_means_host() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/self/cgroup", "0::/svc\n");
        write(root, "proc/self/mountinfo", MOUNTINFO);
        write(root, "sys/fs/cgroup/svc/memory.max", &format!("{}\n", 1u64 << 50));
        write(root, "sys/fs/cgroup/svc/memory.current", "1\n");
        write(root, "sys/fs/cgroup/svc/memory.stat", "inactive_file 0\n");
        let metrics = sampler_at(root).sample_memory_metrics();
        assert_eq!(metrics.memory_limit_source, MemoryLimitSource::Host);
        assert_eq!(metrics.system_total, sample_host_memory().unwrap().total);
        assert_eq!(metrics.psi, None);
    }

    #[test]
    fn unreadable_cgroup_falls_back_to_host_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/self/cgroup", "0::/svc\n");
        write(root, "proc/self/mountinfo", MOUNTINFO);
        write(root, "sys/fs/cgroup/cgroup.controllers", "memory\n");
        write(root, "sys/fs/cgroup/svc/memory.max", "garbage\n");
        let sampler = sampler_at(root);
        let metrics = sampler.sample_memory_metrics();
        assert_eq!(metrics.memory_limit_source, MemoryLimitSource::Host);
        assert!(metrics.cgroup.unwrap().error.unwrap().contains("memory.max"));
        // Once the file is fixed the next sample sees the limit (a failed read keeps no cache).
        write(root, "sys/fs/cgroup/svc/memory.max", "1048576\n");
        write(root, "sys/fs/cgroup/svc/memory.current", "524288\n");
        write(root, "sys/fs/cgroup/svc/memory.stat", "inactive_file 0\n");
        let metrics = sampler.sample_memory_metrics();
        assert_eq!((metrics.system_total, metrics.system_used), (1 << 20, 1 << 19));
    }

    #[test]
    fn usage_is_read_every_sample_and_limits_every_second() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/self/cgroup", "0::/svc\n");
        write(root, "proc/self/mountinfo", MOUNTINFO);
        write(root, "sys/fs/cgroup/svc/memory.max", "1048576\n");
        write(root, "sys/fs/cgroup/svc/memory.current", "0\n");
        write(root, "sys/fs/cgroup/svc/memory.stat", "inactive_file 0\n");
        let sampler = sampler_at(root);
        let m = sampler.sample_memory_metrics();
        assert_eq!((m.system_total, m.system_used), (1 << 20, 0));
        write(root, "sys/fs/cgroup/svc/memory.current", "524288\n");
        write(root, "sys/fs/cgroup/svc/memory.max", "2097152\n");
        let m = sampler.sample_memory_metrics();
        assert_eq!((m.system_total, m.system_used), (1 << 20, 1 << 19), "usage now, the limit from the cache");
        std::thread::sleep(LIMIT_REREAD + Duration::from_millis(50));
        assert_eq!(sampler.sample_memory_metrics().system_total, 2 << 20);
    }

    #[test]
    fn a_process_that_moves_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/self/cgroup", "0::/a\n");
        write(root, "proc/self/mountinfo", MOUNTINFO);
        for (name, limit) in [("a", 1u64 << 20), ("b", 2u64 << 20)] {
            write(root, &format!("sys/fs/cgroup/{name}/memory.max"), &format!("{limit}\n"));
            write(root, &format!("sys/fs/cgroup/{name}/memory.current"), "0\n");
            write(root, &format!("sys/fs/cgroup/{name}/memory.stat"), "inactive_file 0\n");
        }
        let sampler = sampler_at(root);
        assert_eq!(sampler.sample_memory_metrics().system_total, 1 << 20);
        write(root, "proc/self/cgroup", "0::/b\n");
        fs::remove_dir_all(root.join("sys/fs/cgroup/a")).unwrap();
        assert_eq!(sampler.sample_memory_metrics().system_total, 2 << 20);
    }
}
