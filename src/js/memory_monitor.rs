//! `MemoryMonitor`: memory-pressure detection, right inside containers.

use napi::bindgen_prelude::*;
use napi::{Env, Unknown};
use napi_derive::napi;
use std::path::PathBuf;
use std::sync::Arc;

use super::args::{frozen, range_violation, OptionsObject};
use super::json::JsonShape;
use super::task::{Job, OffThread};
use crate::monitors::memory::MemoryMonitor as MemoryMonitorCore;
use crate::policy::pressure::MemoryPressure;
use crate::policy::thresholds::{MemoryThresholds as CoreThresholds, MEMORY_THRESHOLDS};
use crate::sampling::memory::MemoryMetrics as CoreMetrics;
use crate::sampling::memory::MemorySampler;
use crate::sampling::nvml_session::{resolve_nvml_library, shared_session};
use crate::shapes::PressureReport;

const OPTION_NAMES: &[&str] = &["thresholds", "nvmlLibraryPath", "fsRoot"];

/// Options of `new MemoryMonitor(options)`; declared for the typings, read by hand so that
/// each bad value gets its own message.
#[allow(dead_code)]
#[napi(object)]
pub struct MemoryMonitorOptions {
    pub thresholds: Option<MemoryThresholdsInput>,
    /// NVML library to load; default `HPC_HEALTH_NVML_LIBRARY`, else `libnvidia-ml.so.1`.
    pub nvml_library_path: Option<String>,
    /// Directory under which `/proc` and `/sys` are read (default `/`).
    pub fs_root: Option<String>,
}

#[allow(dead_code)]
#[napi(object)]
pub struct MemoryThresholdsInput {
    #[napi(js_name = "gpu_memory")]
    pub gpu_memory: Option<f64>,
    #[napi(js_name = "system_memory")]
    pub system_memory: Option<f64>,
    #[napi(js_name = "warning_interval")]
    pub warning_interval: Option<f64>,
}

/// Reads `thresholds` over `base`: keys given replace, keys left out keep `base`.
fn read_thresholds(env: &Env, thresholds: &OptionsObject, base: CoreThresholds) -> Result<CoreThresholds> {
    let [gpu, system, interval] = threshold_names();
    CoreThresholds::from_values(
        Some(thresholds.number(gpu)?.unwrap_or(base.gpu_memory)),
        Some(thresholds.number(system)?.unwrap_or(base.system_memory)),
        Some(thresholds.number(interval)?.unwrap_or(base.warning_interval_ms)),
    )
    .map_err(|v| range_violation(env, v))
}

fn threshold_names() -> [&'static str; 3] {
    MEMORY_THRESHOLDS.map(|spec| spec.key())
}

/// Watches host and GPU memory pressure. Every sample is taken off the JS thread.
#[napi]
pub struct MemoryMonitor {
    pub(crate) core: Arc<MemoryMonitorCore>,
}

#[napi]
impl MemoryMonitor {
    #[napi(constructor, ts_args_type = "options?: MemoryMonitorOptions")]
    pub fn new(env: Env, this: This<Unknown>, options: Option<Unknown>) -> Result<Self> {
        super::task::guarded(&env, "MemoryMonitor.constructor", || {
            super::receiver::require_new::<Self>(&env, &this, "MemoryMonitor")?;
            let options = OptionsObject::read(&env, options, "options", OPTION_NAMES)?;
            let mut thresholds = CoreThresholds::default();
            let mut library = None;
            let mut root = PathBuf::from("/");
            if let Some(options) = options {
                if let Some(given) = options.object("thresholds", &threshold_names())? {
                    thresholds = read_thresholds(&env, &given, thresholds)?;
                }
                library = options.string("nvmlLibraryPath")?;
                if let Some(fs_root) = options.string("fsRoot")? {
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
            let given = OptionsObject::required(&env, Some(value), "thresholds", &threshold_names())?;
            let thresholds = read_thresholds(&env, &given, self.core.thresholds())?;
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
