//! One full check as history records: the host's and each GPU's.

use super::policy::MAX_RECORDED_GPUS;
use super::record::{GpuSignal, HealthState, HostSignal, Record, Source, FLAG_GPU_LOST, FLAG_UNHEALTHY_CHECK};
use crate::health::SystemHealth;
use crate::sampling::gpu::GpuDeviceSample;

const MIB: u64 = 1 << 20;

fn mib(bytes: u64) -> u32 {
    (bytes / MIB).min(u64::from(u32::MAX)) as u32
}

fn clamp_u32(value: f64) -> u32 {
    if value.is_finite() {
        value.round().clamp(0.0, f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

/// The records of one full check. `state` is the supervisor's state after it, `flags` the
/// pause flags (`FLAG_INTAKE_CLOSED`, …) at that moment; the bucket is set by the writer.
pub fn records_of(health: &SystemHealth, state: HealthState, flags: u8) -> Vec<Record> {
    let mut host = Record::new(Source::Host, 1, 0);
    if let Some((_, metrics)) = &health.memory {
        if metrics.system_error.is_none() && metrics.system_total > 0 {
            host.set(HostSignal::MemoryUsedMib as usize, Some(mib(metrics.system_used)));
            host.set(HostSignal::MemoryTotalMib as usize, Some(mib(metrics.system_total)));
        }
        if let Some(psi) = &metrics.psi {
            host.set(HostSignal::PsiSomeCentis as usize, Some(clamp_u32(psi.some_avg10 * 100.0)));
            host.set(HostSignal::PsiFullCentis as usize, Some(clamp_u32(psi.full_avg10 * 100.0)));
        }
    }
    host.set(HostSignal::Issues as usize, Some(health.issues.len().min(u32::MAX as usize) as u32));
    host.set_state(state);
    host.set_flags(flags | if health.healthy { 0 } else { FLAG_UNHEALTHY_CHECK });

    // The GPU monitor's devices where it runs (they carry the signals), else the memory
    // monitor's.
    let devices: Vec<&GpuDeviceSample> = match (&health.gpu, &health.memory) {
        (Some(gpu), _) if !gpu.devices.is_empty() => gpu.devices.iter().map(|d| &d.sample).collect(),
        (_, Some((_, metrics))) => metrics.gpus.iter().collect(),
        _ => Vec::new(),
    };
    let mut records = vec![host];
    for device in devices.into_iter().filter(|d| d.index < MAX_RECORDED_GPUS) {
        let mut gpu = Record::new(Source::Gpu(device.index as u8), 1, 0);
        if !device.lost && device.total > 0 {
            gpu.set(GpuSignal::MemoryUsedMib as usize, Some(mib(device.used)));
            gpu.set(GpuSignal::MemoryTotalMib as usize, Some(mib(device.total)));
        }
        if let Some(signals) = &device.signals {
            gpu.set(GpuSignal::TemperatureC as usize, signals.temperature);
            gpu.set(GpuSignal::UtilizationPct as usize, signals.utilization);
            gpu.set(GpuSignal::PowerMilliwatts as usize, signals.power_watts.map(|w| clamp_u32(w * 1000.0)));
        }
        gpu.set_flags(if device.lost { FLAG_GPU_LOST } else { 0 });
        records.push(gpu);
    }
    records
}

/// A check that gave no answer: the host's record with the supervisor's state and pauses and
/// no signals (nothing was measured); no GPU records.
pub fn failed_check(state: HealthState, flags: u8) -> Vec<Record> {
    let mut host = Record::new(Source::Host, 1, 0);
    host.set_state(state);
    host.set_flags(flags);
    vec![host]
}
