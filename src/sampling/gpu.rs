//! Per-device GPU memory through NVML. A lost device is marked on its own and never fails
//! the others; no library, driver or device gives `available: false` with the reason.

use super::nvml_session::{describe_nvml_error, KnownDevice, NvmlSession};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDeviceMemory {
    pub index: u32,
    /// `None` only for a device that was lost before it ever answered.
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub used: u64,
    pub total: u64,
    pub lost: bool,
    /// Why this device's memory could not be read, other than being lost.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuMemorySample {
    pub available: bool,
    pub error: Option<String>,
    pub devices: Vec<GpuDeviceMemory>,
}

impl GpuMemorySample {
    pub fn unavailable(reason: String) -> Self {
        GpuMemorySample { available: false, error: Some(reason), devices: Vec::new() }
    }
}

/// NVML's word for a device that fell off the bus, or whose handle went stale with it.
pub fn is_lost(error: &NvmlError) -> bool {
    matches!(error, NvmlError::GpuLost)
}

/// Reads memory, name and UUID of every device.
pub fn sample_gpu_memory(session: &NvmlSession) -> GpuMemorySample {
    match session.with_nvml(|nvml| sample_devices(session, nvml)) {
        Ok(sample) => sample,
        Err(reason) => GpuMemorySample::unavailable(reason),
    }
}

fn sample_devices(session: &NvmlSession, nvml: &Nvml) -> GpuMemorySample {
    let count = match nvml.device_count() {
        Ok(0) => return GpuMemorySample::unavailable("NVML reports no GPU devices".to_owned()),
        Ok(count) => count,
        Err(error) => {
            return GpuMemorySample::unavailable(format!("NVML could not count devices: {}", describe_nvml_error(&error)))
        }
    };
    let devices = (0..count).map(|index| sample_device(session, nvml, index)).collect();
    GpuMemorySample { available: true, error: None, devices }
}

fn sample_device(session: &NvmlSession, nvml: &Nvml, index: u32) -> GpuDeviceMemory {
    let known = session.known_device(index);
    let mut result = GpuDeviceMemory {
        index,
        uuid: known.as_ref().map(|k| k.uuid.clone()),
        name: known.as_ref().map(|k| k.name.clone()),
        used: 0,
        total: 0,
        lost: false,
        error: None,
    };
    let mark = |result: &mut GpuDeviceMemory, error: NvmlError| {
        if is_lost(&error) {
            result.lost = true;
        } else if result.error.is_none() {
            result.error = Some(describe_nvml_error(&error));
        }
    };
    let device = match nvml.device_by_index(index) {
        Ok(device) => device,
        Err(error) => {
            mark(&mut result, error);
            return result;
        }
    };
    match (device.uuid(), device.name()) {
        (Ok(uuid), Ok(name)) => {
            if known.as_ref().is_none_or(|k| k.uuid != uuid || k.name != name) {
                session.remember_device(KnownDevice { index, uuid: uuid.clone(), name: name.clone() });
            }
            result.uuid = Some(uuid);
            result.name = Some(name);
        }
        (Err(error), _) | (_, Err(error)) => mark(&mut result, error),
    }
    if !result.lost {
        match device.memory_info() {
            Ok(memory) => {
                result.used = memory.used;
                result.total = memory.total;
            }
            Err(error) => mark(&mut result, error),
        }
    }
    result
}
