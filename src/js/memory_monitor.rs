//! `MemoryMonitor`: memory-pressure detection, right inside containers.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown};
use napi_derive::napi;
use std::path::PathBuf;
use std::sync::Arc;

use super::args::{frozen, range_violation};
use super::input::{js_fields, Fields};
use super::json::JsonShape;
use super::task::{Job, OffThread};
use crate::monitors::memory::MemoryMonitor as MemoryMonitorCore;
use crate::policy::pressure::MemoryPressure;
use crate::policy::thresholds::MemoryThresholds as CoreThresholds;
use crate::sampling::memory::MemoryMetrics as CoreMetrics;
use crate::sampling::memory::MemorySampler;
use crate::sampling::nvml_session::{resolve_nvml_library, shared_session};
use crate::shapes::PressureReport;

/// Options of `new MemoryMonitor(options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct MemoryMonitorOptions {
    pub thresholds: Option<MemoryThresholdsInput>,
    /// NVML library to load; default `HPC_HEALTH_NVML_LIBRARY`, else `libnvidia-ml.so.1`.
    pub nvml_library_path: Option<String>,
    /// Directory under which `/proc` and `/sys` are read (default `/`).
    pub fs_root: Option<String>,
}

js_fields!(MemoryMonitorOptions {
    thresholds = "thresholds",
    nvml_library_path = "nvmlLibraryPath",
    fs_root = "fsRoot",
});

/// Memory thresholds to change; those left out keep their values.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct MemoryThresholdsInput {
    #[napi(js_name = "gpu_memory")]
    pub gpu_memory: Option<f64>,
    #[napi(js_name = "system_memory")]
    pub system_memory: Option<f64>,
    #[napi(js_name = "warning_interval")]
    pub warning_interval: Option<f64>,
}

js_fields!(MemoryThresholdsInput {
    gpu_memory = "gpu_memory",
    system_memory = "system_memory",
    warning_interval = "warning_interval",
});

impl MemoryThresholdsInput {
    /// These over `base`: keys given replace, keys left out keep `base`; checked together.
    fn over(self, env: &Env, base: CoreThresholds) -> Result<CoreThresholds> {
        CoreThresholds::from_values(
            Some(self.gpu_memory.unwrap_or(base.gpu_memory)),
            Some(self.system_memory.unwrap_or(base.system_memory)),
            Some(self.warning_interval.unwrap_or(base.warning_interval_ms)),
        )
        .map_err(|v| range_violation(env, v))
    }
}

/// Watches host and GPU memory pressure. Every sample is taken off the JS thread.
#[napi]
pub struct MemoryMonitor {
    pub(crate) core: Arc<MemoryMonitorCore>,
}

impl super::input::Attachable for MemoryMonitor {
    const JS_NAME: &'static str = "MemoryMonitor";
    type Core = Arc<MemoryMonitorCore>;
    fn core(&self) -> Self::Core {
        self.core.clone()
    }
}

#[napi]
impl MemoryMonitor {
    #[napi(constructor, ts_args_type = "options?: MemoryMonitorOptions")]
    pub fn new(env: Env, this: This<Unknown>, options: Option<Unknown>) -> Result<Self> {
        super::task::guarded(&env, "MemoryMonitor.constructor", || {
            super::receiver::require_new::<Self>(&env, &this, "MemoryMonitor")?;
            let options = MemoryMonitorOptions::read(&env, options, "options")?;
            let mut thresholds = CoreThresholds::default();
            let mut library = None;
            let mut root = PathBuf::from("/");
            if let Some(options) = options {
                if let Some(given) = options.thresholds {
                    thresholds = given.over(&env, thresholds)?;
                }
                library = options.nvml_library_path;
                if let Some(fs_root) = options.fs_root {
                    root = PathBuf::from(fs_root);
                }
            }
            let session = shared_session(&resolve_nvml_library(library.as_deref()));
            let core = MemoryMonitorCore::new(MemorySampler::new(root, session), thresholds);
            Ok(MemoryMonitor { core: Arc::new(core) })
        })
    }

    /// The current thresholds, as a frozen copy: assign a new object to change them.
    #[napi(getter, ts_return_type = "MemoryThresholds")]
    pub fn get_thresholds<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        super::task::guarded(env, "MemoryMonitor.thresholds", || frozen(env, JsonShape::of(&self.core.thresholds())))
    }

    /// Replaces the thresholds given; those left out keep their current values.
    #[napi(setter, js_name = "thresholds", ts_args_type = "value: MemoryThresholdsInput")]
    pub fn set_thresholds(&self, env: Env, value: Unknown) -> Result<()> {
        super::task::guarded(&env, "MemoryMonitor.thresholds", || {
            let given = MemoryThresholdsInput::required(&env, Some(value), "thresholds")?;
            let thresholds = given.over(&env, self.core.thresholds())?;
            self.core.set_thresholds(thresholds);
            Ok(())
        })
    }

    /// One memory sample: host (or cgroup) and every GPU.
    #[napi(ts_return_type = "Promise<MemoryMetrics>")]
    pub fn get_memory_metrics(&self, env: Env) -> Result<AsyncTask<Job<SampleMetrics>>> {
        super::task::guarded(&env, "MemoryMonitor.getMemoryMetrics", || {
            Ok(AsyncTask::new(Job(SampleMetrics(self.core.clone()))))
        })
    }

    /// Samples and judges against the thresholds.
    #[napi(ts_return_type = "Promise<MemoryPressureReport>")]
    pub fn check_memory_pressure(&self, env: Env) -> Result<AsyncTask<Job<CheckPressure>>> {
        super::task::guarded(&env, "MemoryMonitor.checkMemoryPressure", || {
            Ok(AsyncTask::new(Job(CheckPressure(self.core.clone()))))
        })
    }
}

pub struct SampleMetrics(Arc<MemoryMonitorCore>);

impl OffThread for SampleMetrics {
    type Output = CoreMetrics;
    type Js = JsonShape;
    fn run(&self) -> CoreMetrics {
        self.0.get_memory_metrics()
    }
    fn to_js(output: CoreMetrics) -> JsonShape {
        JsonShape::of(&output)
    }
}

pub struct CheckPressure(Arc<MemoryMonitorCore>);

impl OffThread for CheckPressure {
    type Output = (MemoryPressure, CoreMetrics);
    type Js = JsonShape;
    fn run(&self) -> Self::Output {
        self.0.check_memory_pressure()
    }
    fn to_js((pressure, metrics): Self::Output) -> JsonShape {
        JsonShape::of(&PressureReport { pressure: &pressure, metrics: &metrics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::thresholds::MEMORY_THRESHOLDS;

    #[test]
    fn the_threshold_keys_are_the_specs_keys() {
        assert_eq!(MemoryThresholdsInput::KEYS, MEMORY_THRESHOLDS.map(|spec| spec.key()));
    }
}
