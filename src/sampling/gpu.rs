//! Per-device GPU readings through NVML. A lost device is marked on its own and never fails
//! the others; no library, driver or device gives `available: false` with the reason. A
//! query a device does not support is `None`, never a failure.

use super::nvml_session::{describe_nvml_error, KnownDevice, NvmlSession};
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor, TemperatureThreshold};
use nvml_wrapper::error::{nvml_try, NvmlError};
use nvml_wrapper::{Device, Nvml};

/// NVML's clock throttle reasons (`nvmlClocksEventReason*` in nvml.h) and their names.
pub const THROTTLE_REASONS: [(u64, &str); 9] = [
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

/// The names of the reasons set in `bits`; bits NVML adds later are kept as `0x…`.
pub fn decode_throttle_reasons(bits: u64) -> Vec<String> {
    let known: u64 = THROTTLE_REASONS.iter().map(|(bit, _)| bit).sum();
    let mut names: Vec<String> =
        THROTTLE_REASONS.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, name)| (*name).to_owned()).collect();
    if bits & !known != 0 {
        names.push(format!("0x{:x}", bits & !known));
    }
    names
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemappedRows {
    pub correctable: u32,
    pub uncorrectable: u32,
    pub pending: bool,
    pub failure: bool,
}

/// The health signals of one device, each `None` where the device does not support it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceSignals {
    pub temperature: Option<u32>,
    pub slowdown_temperature: Option<u32>,
    pub shutdown_temperature: Option<u32>,
    /// Percent of the last sample period in which a kernel ran.
    pub utilization: Option<u32>,
    pub power_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    pub throttle_reasons: Option<u64>,
    /// Volatile (since the driver loaded) uncorrected ECC errors.
    pub ecc_uncorrected: Option<u64>,
    pub retired_pages_pending: Option<bool>,
    pub remapped_rows: Option<RemappedRows>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuDeviceSample {
    pub index: u32,
    /// `None` only for a device that was lost before it ever answered.
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub used: u64,
    pub total: u64,
    pub lost: bool,
    /// The first failure other than "lost" (or "not supported" for an optional signal).
    pub error: Option<String>,
    /// Present when health signals were asked for.
    pub signals: Option<DeviceSignals>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    pub available: bool,
    pub error: Option<String>,
    pub devices: Vec<GpuDeviceSample>,
}

impl GpuSample {
    pub fn unavailable(reason: String) -> Self {
        GpuSample { available: false, error: Some(reason), devices: Vec::new() }
    }
}

/// How much to read of each device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuDetail {
    /// Used and total memory only, no name or UUID: the fast sample, taken every second.
    MemoryOnly,
    /// Name, UUID and memory: what memory pressure needs.
    Memory,
    /// Memory and temperature: the quick health check.
    Quick,
    /// Everything health rules look at.
    Health,
}

/// NVML's word for a device that fell off the bus, or whose handle went stale with it.
pub fn is_lost(error: &NvmlError) -> bool {
    matches!(error, NvmlError::GpuLost)
}

/// Reads every device.
pub fn sample_gpus(session: &NvmlSession, detail: GpuDetail) -> GpuSample {
    match session.with_nvml(|nvml| sample_devices(session, nvml, detail)) {
        Ok(sample) => sample,
        Err(reason) => GpuSample::unavailable(reason),
    }
}

fn sample_devices(session: &NvmlSession, nvml: &Nvml, detail: GpuDetail) -> GpuSample {
    let count = nvml.device_count();
    session.remember_device_count(*count.as_ref().unwrap_or(&0));
    let count = match count {
        Ok(0) => return GpuSample::unavailable("NVML reports no GPU devices".to_owned()),
        Ok(count) => count,
        Err(error) => {
            return GpuSample::unavailable(format!("NVML could not count devices: {}", describe_nvml_error(&error)))
        }
    };
    let devices = (0..count).map(|index| sample_device(session, nvml, index, detail)).collect();
    GpuSample { available: true, error: None, devices }
}

/// Collects query results: values pass through, "not supported" becomes `None`, a lost
/// device is remembered (and stops further queries), anything else is kept as the error.
struct Outcome<'a> {
    sample: &'a mut GpuDeviceSample,
}

impl Outcome<'_> {
    /// For optional signals.
    fn take<T>(&mut self, result: Result<T, NvmlError>) -> Option<T> {
        match result {
            Err(NvmlError::NotSupported) => None,
            other => self.take_required(other),
        }
    }

    /// For what every device must answer (identity, memory): "not supported" is an error.
    fn take_required<T>(&mut self, result: Result<T, NvmlError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) if is_lost(&error) => {
                self.sample.lost = true;
                None
            }
            Err(error) => {
                self.sample.error.get_or_insert_with(|| describe_nvml_error(&error));
                None
            }
        }
    }
}

fn sample_device(session: &NvmlSession, nvml: &Nvml, index: u32, detail: GpuDetail) -> GpuDeviceSample {
    let identify = detail != GpuDetail::MemoryOnly;
    let known = if identify { session.known_device(index) } else { None };
    let mut sample = GpuDeviceSample {
        index,
        uuid: known.as_ref().map(|k| k.uuid.clone()),
        name: known.as_ref().map(|k| k.name.clone()),
        used: 0,
        total: 0,
        lost: false,
        error: None,
        signals: None,
    };
    let mut outcome = Outcome { sample: &mut sample };
    let Some(device) = outcome.take_required(nvml.device_by_index(index)) else { return sample };
    let identity = if identify {
        (outcome.take_required(device.uuid()), outcome.take_required(device.name()))
    } else {
        (None, None)
    };
    if let (Some(uuid), Some(name)) = identity {
        if known.as_ref().is_none_or(|k| k.uuid != uuid || k.name != name) {
            session.remember_device(KnownDevice { index, uuid: uuid.clone(), name: name.clone() });
        }
        outcome.sample.uuid = Some(uuid);
        outcome.sample.name = Some(name);
    }
    if outcome.sample.lost {
        return sample;
    }
    if let Some(memory) = outcome.take_required(device.memory_info()) {
        outcome.sample.used = memory.used;
        outcome.sample.total = memory.total;
    }
    match detail {
        GpuDetail::Health if !outcome.sample.lost => {
            let signals = read_signals(nvml, &device, &mut outcome);
            outcome.sample.signals = Some(signals);
        }
        GpuDetail::Quick if !outcome.sample.lost => {
            let temperature = outcome.take(device.temperature(TemperatureSensor::Gpu));
            outcome.sample.signals = Some(DeviceSignals { temperature, ..Default::default() });
        }
        _ => {}
    }
    sample
}

fn read_signals(nvml: &Nvml, device: &Device, outcome: &mut Outcome) -> DeviceSignals {
    let mut signals = DeviceSignals::default();
    // Stop at the first "lost": every further query would say the same.
    macro_rules! query {
        ($field:ident, $expr:expr) => {
            if !outcome.sample.lost {
                signals.$field = outcome.take($expr);
            }
        };
    }
    query!(temperature, device.temperature(TemperatureSensor::Gpu));
    query!(slowdown_temperature, device.temperature_threshold(TemperatureThreshold::Slowdown));
    query!(shutdown_temperature, device.temperature_threshold(TemperatureThreshold::Shutdown));
    query!(utilization, device.utilization_rates().map(|u| u.gpu));
    query!(power_watts, device.power_usage().map(|mw| mw as f64 / 1000.0));
    query!(power_limit_watts, device.enforced_power_limit().map(|mw| mw as f64 / 1000.0));
    query!(throttle_reasons, device.current_throttle_reasons().map(|r| r.bits()));
    query!(ecc_uncorrected, device.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile));
    query!(retired_pages_pending, device.are_pages_pending_retired());
    query!(remapped_rows, read_remapped_rows(nvml, device));
    signals
}

/// `nvmlDeviceGetRemappedRows` (Ampere and newer), which nvml-wrapper does not wrap.
fn read_remapped_rows(nvml: &Nvml, device: &Device) -> Result<RemappedRows, NvmlError> {
    let symbol =
        nvml.lib().nvmlDeviceGetRemappedRows.as_ref().map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let (mut correctable, mut uncorrectable, mut pending, mut failure) = (0u32, 0u32, 0u32, 0u32);
    // SAFETY: the handle belongs to the live `Nvml` borrowed here and the out-pointers are
    // valid for the call.
    unsafe { nvml_try(symbol(device.handle(), &mut correctable, &mut uncorrectable, &mut pending, &mut failure))? };
    Ok(RemappedRows { correctable, uncorrectable, pending: pending != 0, failure: failure != 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_reasons_decode_to_names() {
        assert_eq!(decode_throttle_reasons(0), Vec::<String>::new());
        assert_eq!(decode_throttle_reasons(0x20 | 0x40), ["sw_thermal_slowdown", "hw_thermal_slowdown"]);
        assert_eq!(decode_throttle_reasons(0x4 | 0x1000), ["sw_power_cap", "0x1000"]);
    }
}
