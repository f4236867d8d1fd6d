//! The scripted "hardware": a JSON document that tests rewrite while the
//! library is loaded, plus a cheap stat-based cache so every NVML call sees
//! the latest version without re-parsing the file each time.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// Env var naming the JSON state file.
pub const STATE_ENV: &str = "HPC_HEALTH_STANDIN_STATE";

/// Most devices a state may describe (handles point into a static array).
pub const MAX_DEVICES: usize = 64;

/// Whole-system state. Every field is optional; a missing field takes the
/// value of `State::default()` (so `{}` means "two healthy H100s").
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct State {
    /// Forced return code of nvmlInit_v2 / nvmlInitWithFlags / nvmlInit.
    pub init_error: Option<u32>,
    /// Forced return code of nvmlDeviceGetCount(_v2).
    pub device_count_error: Option<u32>,
    pub driver_version: String,
    /// Defaults to "12.<driver_version>", like real NVML.
    pub nvml_version: Option<String>,
    /// CUDA driver version as an int (12040 = 12.4).
    pub cuda_driver_version: i32,
    pub devices: Vec<DeviceState>,
    pub xid_events: Vec<XidEvent>,
    /// Artificial sleep (ms) before answering, keyed by query key.
    pub delay_ms: HashMap<String, u64>,
}

impl Default for State {
    fn default() -> Self {
        State {
            init_error: None,
            device_count_error: None,
            driver_version: "550.54.15".to_string(),
            nvml_version: None,
            cuda_driver_version: 12040,
            devices: vec![DeviceState::default(), DeviceState::default()],
            xid_events: Vec::new(),
            delay_ms: HashMap::new(),
        }
    }
}

impl State {
    /// Number of devices NVML reports (capped at the handle table size).
    pub fn device_count(&self) -> u32 {
        self.devices.len().min(MAX_DEVICES) as u32
    }

    pub fn device(&self, index: u32) -> Option<&DeviceState> {
        if index < self.device_count() {
            self.devices.get(index as usize)
        } else {
            None
        }
    }

    pub fn delay(&self, key: &str) -> u64 {
        self.delay_ms.get(key).copied().unwrap_or(0)
    }

    pub fn nvml_version(&self) -> String {
        self.nvml_version.clone().unwrap_or_else(|| format!("12.{}", self.driver_version))
    }

    /// Largest event id present (used as the replay baseline of new event sets).
    pub fn max_event_id(&self) -> Option<u64> {
        self.xid_events.iter().map(|e| e.id).max()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DeviceState {
    /// Defaults to "NVIDIA H100 80GB HBM3 (stand-in <index>)".
    pub name: Option<String>,
    /// Defaults to "GPU-5ca1ab1e-0000-4000-8000-<index as 12 hex digits>".
    pub uuid: Option<String>,
    pub memory_total: u64,
    pub memory_used: u64,
    pub memory_reserved: u64,
    pub temperature: u32,
    pub slowdown_temperature: u32,
    pub shutdown_temperature: u32,
    /// NVML_TEMPERATURE_THRESHOLD_GPU_MAX; defaults to `slowdown_temperature`.
    pub gpu_max_temperature: Option<u32>,
    /// NVML_TEMPERATURE_THRESHOLD_MEM_MAX; NOT_SUPPORTED when absent.
    pub mem_max_temperature: Option<u32>,
    pub utilization_gpu: u32,
    pub utilization_memory: u32,
    pub power_usage_mw: u32,
    pub power_limit_mw: u32,
    pub throttle_reasons: u64,
    pub ecc_uncorrected_volatile: u64,
    pub ecc_uncorrected_aggregate: u64,
    pub ecc_corrected_volatile: u64,
    pub ecc_corrected_aggregate: u64,
    pub retired_pages_pending: bool,
    /// `null` => nvmlDeviceGetRemappedRows returns NOT_SUPPORTED.
    pub remapped_rows: Option<RemappedRows>,
    /// Bitmask returned by nvmlDeviceGetSupportedEventTypes.
    pub supported_event_types: u64,
    /// Every per-device query returns NVML_ERROR_GPU_IS_LOST.
    pub lost: bool,
    /// Forced return code per query key (0 = not forced).
    pub errors: HashMap<String, u32>,
}

impl Default for DeviceState {
    fn default() -> Self {
        DeviceState {
            name: None,
            uuid: None,
            memory_total: 85_899_345_920,
            memory_used: 1_073_741_824,
            memory_reserved: 0,
            temperature: 40,
            slowdown_temperature: 87,
            shutdown_temperature: 92,
            gpu_max_temperature: None,
            mem_max_temperature: None,
            utilization_gpu: 0,
            utilization_memory: 0,
            power_usage_mw: 70_000,
            power_limit_mw: 700_000,
            throttle_reasons: 0,
            ecc_uncorrected_volatile: 0,
            ecc_uncorrected_aggregate: 0,
            ecc_corrected_volatile: 0,
            ecc_corrected_aggregate: 0,
            retired_pages_pending: false,
            remapped_rows: Some(RemappedRows::default()),
            // single/double bit ECC, P-state, Xid, clock change
            supported_event_types: 0x1 | 0x2 | 0x4 | 0x8 | 0x10,
            lost: false,
            errors: HashMap::new(),
        }
    }
}

impl DeviceState {
    pub fn name(&self, index: u32) -> String {
        self.name.clone().unwrap_or_else(|| format!("NVIDIA H100 80GB HBM3 (stand-in {index})"))
    }

    pub fn uuid(&self, index: u32) -> String {
        self.uuid.clone().unwrap_or_else(|| default_uuid(index))
    }

    /// Forced return code for `key`, if any (0 means "not forced").
    pub fn forced_error(&self, key: &str) -> Option<u32> {
        self.errors.get(key).copied().filter(|&c| c != 0)
    }
}

pub fn default_uuid(index: u32) -> String {
    format!("GPU-5ca1ab1e-0000-4000-8000-{index:012x}")
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RemappedRows {
    pub correctable: u32,
    pub uncorrectable: u32,
    pub pending: bool,
    pub failure: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct XidEvent {
    pub device: u32,
    pub xid: u64,
    /// Must be unique; an event set delivers each id at most once.
    pub id: u64,
    /// nvmlEventType bit; defaults to nvmlEventTypeXidCriticalError (0x8).
    pub event_type: u64,
}

impl Default for XidEvent {
    fn default() -> Self {
        XidEvent { device: 0, xid: 0, id: 0, event_type: 0x8 }
    }
}

/// Identity of the file version we last looked at: (path, dev, inode,
/// mtime ns, size). Atomic rename changes the inode, in-place writes change
/// size and/or mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileKey {
    path: OsString,
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

struct Cache {
    /// Key of the file version `state` was parsed from (None = default state).
    key: Option<FileKey>,
    /// Key of the last version that failed to parse (so we neither re-parse
    /// nor re-warn until the file changes again).
    bad_key: Option<FileKey>,
    state: Arc<State>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Current state. One `stat` per call; the file is re-read only when its
/// identity changed. Malformed JSON keeps the last good state.
pub fn current() -> Arc<State> {
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(|| Cache { key: None, bad_key: None, state: Arc::new(State::default()) });

    let path = match std::env::var_os(STATE_ENV) {
        Some(p) if !p.is_empty() => p,
        _ => return reset_to_default(cache),
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(_) => return reset_to_default(cache),
    };
    let key = FileKey {
        path: path.clone(),
        dev: meta.dev(),
        ino: meta.ino(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        size: meta.size(),
    };
    if cache.key.as_ref() == Some(&key) || cache.bad_key.as_ref() == Some(&key) {
        return cache.state.clone();
    }

    let parsed = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice::<State>(&bytes).map_err(|e| e.to_string()));
    match parsed {
        Ok(state) => {
            cache.state = Arc::new(state);
            cache.key = Some(key);
            cache.bad_key = None;
        }
        Err(err) => {
            // Visible in test output, once per bad file version.
            eprintln!("nvml_standin: ignoring unreadable state file {}: {err}", std::path::Path::new(&path).display());
            cache.bad_key = Some(key);
        }
    }
    cache.state.clone()
}

fn reset_to_default(cache: &mut Cache) -> Arc<State> {
    if cache.key.is_some() || cache.bad_key.is_some() {
        cache.key = None;
        cache.bad_key = None;
        cache.state = Arc::new(State::default());
    }
    cache.state.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_is_the_default_state() {
        let st: State = serde_json::from_str("{}").unwrap();
        assert_eq!(st.device_count(), 2);
        assert_eq!(st.driver_version, "550.54.15");
        assert_eq!(st.devices[1].uuid(1), "GPU-5ca1ab1e-0000-4000-8000-000000000001");
        assert!(st.devices[0].remapped_rows.is_some());
    }

    #[test]
    fn partial_device_and_null_remapped_rows() {
        let st: State = serde_json::from_str(
            r#"{ "devices": [{ "temperature": 90, "remapped_rows": null,
                              "errors": { "power_usage": 3, "name": 0 } }] }"#,
        )
        .unwrap();
        let d = &st.devices[0];
        assert_eq!(d.temperature, 90);
        assert_eq!(d.memory_total, 85_899_345_920);
        assert!(d.remapped_rows.is_none());
        assert_eq!(d.forced_error("power_usage"), Some(3));
        assert_eq!(d.forced_error("name"), None);
        assert_eq!(st.max_event_id(), None);
    }

    #[test]
    fn device_count_is_capped() {
        let st = State { devices: vec![DeviceState::default(); MAX_DEVICES + 5], ..State::default() };
        assert_eq!(st.device_count(), MAX_DEVICES as u32);
        assert!(st.device(MAX_DEVICES as u32).is_none());
    }
}
