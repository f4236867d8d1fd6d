//! The JSON shapes of what this package reports, each defined once, as `Serialize` on the
//! core types: memory metrics and pressure, GPU health, health issues and health checks.
//! The binding hands these to JavaScript, the RPC tools answer with them, and a checkpoint
//! stores `memory_state` and `gpu_state` in them; `index.d.ts` (from `typings-header.d.ts`)
//! describes the same shapes for TypeScript.
//!
//! The status, events and recovery actions are shaped in `supervisor::status`; the
//! checkpoint manager's own results in `durable::manager`.

use serde::ser::{Serialize, SerializeStruct, Serializer};
use std::collections::BTreeMap;

use crate::durable::IncidentRecord;
use crate::health::SystemHealth;
use crate::history::{HealthState, HistoryReadout, Source};
use crate::monitors::gpu_health::{DeviceHealth, GpuHealthReport};
use crate::policy::gpu_health::AllocatorUse;
use crate::policy::issues::HealthIssue;
use crate::policy::pressure::{DevicePressure, MemoryPressure};
use crate::policy::thresholds::MemoryThresholds;
use crate::policy::xid_catalog::classify_xid;
use crate::sampling::gpu::{decode_throttle_reasons, GpuDeviceSample, RemappedRows};
use crate::sampling::memory::{CgroupReport, MemoryMetrics};
use crate::sampling::psi::MemoryPsi;
use crate::sampling::xid_watch::{WatchState, XidEvent};

/// Writes `name`'s fields in order: `fields!(s, "Name", { "key" => value, ... })`.
macro_rules! fields {
    ($serializer:expr, $name:literal, { $($key:literal => $value:expr),* $(,)? }) => {{
        let mut out = $serializer.serialize_struct($name, [$($key),*].len())?;
        $(out.serialize_field($key, &$value)?;)*
        out.end()
    }};
}

/// The JSON of any shape here, for the places that hold JSON data (RPC, checkpoints).
pub fn to_json(value: &impl Serialize) -> serde_json::Value {
    // These shapes are plain data with string keys: serializing them cannot fail.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The metrics history as `readHistory` returns it: the host's points and each GPU's,
/// oldest first, each signal `{ min, max, last }` over its bucket (or `null` when no sample
/// in the bucket had it), times in ms since the Unix epoch.
pub fn history_json(readout: &HistoryReadout) -> serde_json::Value {
    use crate::history::record::{
        GpuSignal, HostSignal, Record, Stat, FLAG_GPU_LOST, FLAG_INTAKE_CLOSED, FLAG_RECOVERY_PAUSE,
        FLAG_SUPERVISOR_PAUSE, FLAG_UNHEALTHY_CHECK,
    };
    use serde_json::json;
    let stat = |r: &Record, slot: usize, scale: f64| {
        r.stat(slot).map(|Stat { min, max, last }| {
            json!({ "min": f64::from(min) / scale, "max": f64::from(max) / scale, "last": f64::from(last) / scale })
        })
    };
    let mut host = Vec::new();
    let mut gpus: BTreeMap<u8, Vec<serde_json::Value>> = BTreeMap::new();
    for r in &readout.records {
        match r.source {
            Source::Host => {
                let states: Vec<&str> = HealthState::ALL
                    .iter()
                    .filter(|&&state| r.states_seen & (1 << state as u8) != 0)
                    .map(|state| state.as_str())
                    .collect();
                host.push(json!({
                    "t": r.start_ms, "step_ms": r.step_ms, "samples": r.samples,
                    "memory_used_mib": stat(r, HostSignal::MemoryUsedMib as usize, 1.0),
                    "memory_total_mib": stat(r, HostSignal::MemoryTotalMib as usize, 1.0),
                    "psi_some_avg10": stat(r, HostSignal::PsiSomeCentis as usize, 100.0),
                    "psi_full_avg10": stat(r, HostSignal::PsiFullCentis as usize, 100.0),
                    "issues": stat(r, HostSignal::Issues as usize, 1.0),
                    "state": HealthState::from_code(r.state_last).map(HealthState::as_str),
                    "states_seen": states,
                    "intake_closed": r.flags_seen & FLAG_INTAKE_CLOSED != 0,
                    "intake_closed_last": r.flags_last & FLAG_INTAKE_CLOSED != 0,
                    "recovery_paused": r.flags_seen & FLAG_RECOVERY_PAUSE != 0,
                    "supervisor_paused": r.flags_seen & FLAG_SUPERVISOR_PAUSE != 0,
                    "unhealthy_check": r.flags_seen & FLAG_UNHEALTHY_CHECK != 0,
                }));
            }
            Source::Gpu(index) => gpus.entry(index).or_default().push(json!({
                "t": r.start_ms, "step_ms": r.step_ms, "samples": r.samples,
                "memory_used_mib": stat(r, GpuSignal::MemoryUsedMib as usize, 1.0),
                "memory_total_mib": stat(r, GpuSignal::MemoryTotalMib as usize, 1.0),
                "temperature_c": stat(r, GpuSignal::TemperatureC as usize, 1.0),
                "utilization_pct": stat(r, GpuSignal::UtilizationPct as usize, 1.0),
                "power_w": stat(r, GpuSignal::PowerMilliwatts as usize, 1000.0),
                "lost": r.flags_seen & FLAG_GPU_LOST != 0,
                "lost_last": r.flags_last & FLAG_GPU_LOST != 0,
            })),
        }
    }
    let gpus: Vec<serde_json::Value> =
        gpus.into_iter().map(|(index, points)| json!({ "index": index, "points": points })).collect();
    json!({ "host": host, "gpus": gpus, "skipped_records": readout.skipped, "unreadable_files": readout.unreadable })
}

impl Serialize for MemoryPsi {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "MemoryPsi", { "some_avg10" => self.some_avg10, "full_avg10" => self.full_avg10 })
    }
}

impl Serialize for CgroupReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "CgroupReport", {
            "version" => self.version.map(|v| v.number()),
            "path" => self.path,
            "limit" => self.limit,
            "error" => self.error,
        })
    }
}

/// A device's memory, as `MemoryMetrics.gpus` lists it (`GpuMemory`).
impl Serialize for GpuDeviceSample {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "GpuMemory", {
            "index" => self.index,
            "uuid" => self.uuid,
            "name" => self.name,
            "used" => self.used,
            "total" => self.total,
            "lost" => self.lost,
            "error" => self.error,
        })
    }
}

impl Serialize for MemoryMetrics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "MemoryMetrics", {
            "timestamp" => self.timestamp_ms,
            "gpu_used" => self.gpu_used,
            "gpu_total" => self.gpu_total,
            "system_used" => self.system_used,
            "system_total" => self.system_total,
            "system_error" => self.system_error,
            "memory_limit_source" => self.memory_limit_source.as_str(),
            "psi" => self.psi,
            "gpu_available" => self.gpu_available,
            "gpu_error" => self.gpu_error,
            "gpus" => self.gpus,
            "cgroup" => self.cgroup,
        })
    }
}

/// `GpuPressure`.
impl Serialize for DevicePressure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "GpuPressure", { "index" => self.index, "ratio" => self.ratio, "pressure" => self.pressure })
    }
}

/// `checkMemoryPressure()`: the verdict with the metrics it was made from.
pub struct PressureReport<'a> {
    pub pressure: &'a MemoryPressure,
    pub metrics: &'a MemoryMetrics,
}

impl Serialize for PressureReport<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.pressure;
        fields!(s, "MemoryPressureReport", {
            "gpu_pressure" => p.gpu_pressure,
            "system_pressure" => p.system_pressure,
            "gpu_ratio" => p.gpu_ratio,
            "system_ratio" => p.system_ratio,
            "gpus" => p.gpus,
            "metrics" => self.metrics,
        })
    }
}

/// The keys of a `HealthIssue`, as written here and read back by `triggerRecovery`.
pub const HEALTH_ISSUE_KEYS: [&str; 6] = ["code", "severity", "device", "message", "action", "eta_ms"];

impl Serialize for HealthIssue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let [code, severity, device, message, action, eta_ms] = HEALTH_ISSUE_KEYS;
        // Only a forecast has an `eta_ms`: every other issue keeps its five fields.
        let mut out = s.serialize_struct("HealthIssue", 5 + usize::from(self.eta_ms.is_some()))?;
        out.serialize_field(code, self.code.as_str())?;
        out.serialize_field(severity, self.severity.as_str())?;
        out.serialize_field(device, &self.device)?;
        out.serialize_field(message, &self.message)?;
        out.serialize_field(action, self.action.as_str())?;
        if let Some(value) = self.eta_ms {
            out.serialize_field(eta_ms, &value)?;
        }
        out.end()
    }
}

impl Serialize for RemappedRows {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "RemappedRows", {
            "correctable" => self.correctable,
            "uncorrectable" => self.uncorrectable,
            "pending" => self.pending,
            "failure" => self.failure,
        })
    }
}

impl Serialize for AllocatorUse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "AllocatorUse", {
            "allocated" => self.allocated,
            "reserved" => self.reserved,
            "fragmentation" => self.fragmentation,
            "reported_at" => self.reported_at_ms,
        })
    }
}

/// `XidError`: an Xid event with the action its code calls for.
impl Serialize for XidEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "XidError", {
            "code" => self.code,
            "timestamp" => self.timestamp_ms,
            "action" => classify_xid(self.code).action.as_str(),
        })
    }
}

/// `GpuDeviceHealth`: the sample's signals flattened, with the verdict.
impl Serialize for DeviceHealth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = &self.sample;
        let signals = d.signals.clone().unwrap_or_default();
        fields!(s, "GpuDeviceHealth", {
            "index" => d.index,
            "uuid" => d.uuid,
            "name" => d.name,
            "status" => self.verdict.status,
            "temperature" => signals.temperature,
            "slowdown_temperature" => signals.slowdown_temperature,
            "shutdown_temperature" => signals.shutdown_temperature,
            "memory_used" => d.used,
            "memory_total" => d.total,
            "utilization" => signals.utilization,
            "power_watts" => signals.power_watts,
            "power_limit_watts" => signals.power_limit_watts,
            "throttle_reasons" => signals.throttle_reasons.map(decode_throttle_reasons),
            "ecc_uncorrected" => signals.ecc_uncorrected,
            "retired_pages_pending" => signals.retired_pages_pending,
            "remapped_rows" => signals.remapped_rows,
            "xid_errors" => self.verdict.xid_errors,
            "lost" => d.lost,
            "allocator" => self.allocator,
            "error" => d.error,
        })
    }
}

/// `XidWatchStatus`: whether the background Xid watch is working.
impl Serialize for WatchState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (state, devices, error): (_, &[u32], _) = match self {
            WatchState::Starting => ("starting", &[], None),
            WatchState::Watching(devices) => ("watching", devices, None),
            WatchState::Retrying(error) => ("retrying", &[], Some(error)),
        };
        fields!(s, "XidWatchStatus", { "state" => state, "devices" => devices, "error" => error })
    }
}

/// `GpuHealth`.
impl Serialize for GpuHealthReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "GpuHealth", {
            "timestamp" => self.timestamp_ms,
            "memory_fragmentation" => self.memory_fragmentation,
            "temperature" => self.temperature,
            "memory_allocated" => self.memory_allocated,
            "memory_reserved" => self.memory_reserved,
            "healthy" => self.healthy,
            "status" => self.status,
            "gpu_available" => self.gpu_available,
            "gpu_error" => self.gpu_error,
            "devices" => self.devices,
            "issues" => self.issues,
            "xid_watch" => self.xid_watch,
        })
    }
}

/// `SystemHealthReport`: one health check of the whole system.
impl Serialize for SystemHealth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let memory = self.memory.as_ref().map(|(pressure, metrics)| PressureReport { pressure, metrics });
        fields!(s, "SystemHealthReport", {
            "healthy" => self.healthy,
            "check_type" => self.check_type.as_str(),
            "timestamp" => self.timestamp_ms,
            "duration_ms" => self.duration_ms,
            "memory" => memory,
            "gpu" => self.gpu,
            "issues" => self.issues,
            "accepting_requests" => self.accepting_requests,
        })
    }
}

/// An incident as `IncidentLog.read` returns it.
impl Serialize for IncidentRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "IncidentRecord", {
            "seq" => self.seq,
            "timestamp" => self.timestamp_ms,
            "kind" => self.kind,
            "severity" => self.severity.as_str(),
            "message" => self.message,
            "details" => self.details,
        })
    }
}

/// `MemoryMonitor.thresholds`.
impl Serialize for MemoryThresholds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields!(s, "MemoryThresholds", {
            "gpu_memory" => self.gpu_memory,
            "system_memory" => self.system_memory,
            "warning_interval" => self.warning_interval_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::gpu_health::DeviceVerdict;
    use crate::policy::issues::IssueCode;
    use crate::sampling::cgroup::CgroupVersion;
    use crate::sampling::gpu::DeviceSignals;
    use crate::sampling::memory::MemoryLimitSource;
    use serde_json::json;

    fn gpu(index: u32, signals: Option<DeviceSignals>) -> GpuDeviceSample {
        GpuDeviceSample {
            index,
            uuid: Some(format!("GPU-{index}")),
            name: None,
            used: 85_899_345_920,
            total: 85_899_345_920,
            lost: false,
            error: None,
            signals,
        }
    }

    #[test]
    fn memory_metrics_have_the_documented_keys_and_integers_stay_integers() {
        let metrics = MemoryMetrics {
            timestamp_ms: 1.5,
            gpu_used: 85_899_345_920,
            gpu_total: 2,
            system_used: 3,
            system_total: 4,
            system_error: None,
            memory_limit_source: MemoryLimitSource::Cgroup,
            psi: Some(MemoryPsi { some_avg10: 0.5, full_avg10: 0.25 }),
            gpu_available: true,
            gpu_error: None,
            gpus: vec![gpu(0, None)],
            cgroup: Some(CgroupReport {
                version: Some(CgroupVersion::V2),
                path: Some("/a".into()),
                limit: Some(9),
                error: None,
            }),
        };
        let value = to_json(&metrics);
        assert_eq!(
            value,
            json!({
                "timestamp": 1.5, "gpu_used": 85_899_345_920u64, "gpu_total": 2, "system_used": 3, "system_total": 4,
                "system_error": null, "memory_limit_source": "cgroup",
                "psi": { "some_avg10": 0.5, "full_avg10": 0.25 }, "gpu_available": true, "gpu_error": null,
                "gpus": [{ "index": 0, "uuid": "GPU-0", "name": null, "used": 85_899_345_920u64, "total": 85_899_345_920u64, "lost": false, "error": null }],
                "cgroup": { "version": 2, "path": "/a", "limit": 9, "error": null },
            })
        );
        // A byte count is written as an integer, never as `85899345920.0`.
        assert!(serde_json::to_string(&metrics).unwrap().contains(r#""gpu_used":85899345920,"#));
    }

    #[test]
    fn a_health_issue_has_one_shape_with_eta_ms_only_on_a_forecast() {
        let issue = HealthIssue::new(IssueCode::GpuMemoryPressure, Some(1), "full".into());
        assert_eq!(
            to_json(&issue),
            json!({ "code": "GPU_MEMORY_PRESSURE", "severity": "fail", "device": 1, "message": "full", "action": "clear_cache" })
        );
        let forecast = HealthIssue {
            eta_ms: Some(30_000),
            ..HealthIssue::new(IssueCode::MemoryExhaustionForecast, None, "soon".into())
        };
        let value = to_json(&forecast);
        assert_eq!(value["eta_ms"], 30_000);
        assert_eq!(value.as_object().unwrap().len(), 6);
    }

    #[test]
    fn device_health_flattens_the_signals_and_names_the_xid_actions() {
        let signals = DeviceSignals {
            temperature: Some(40),
            throttle_reasons: Some(0x20),
            ecc_uncorrected: Some(3),
            remapped_rows: Some(RemappedRows { correctable: 1, uncorrectable: 2, pending: true, failure: false }),
            ..DeviceSignals::default()
        };
        let device = DeviceHealth {
            sample: gpu(0, Some(signals)),
            verdict: DeviceVerdict {
                status: "fail",
                xid_errors: vec![XidEvent { device: 0, uuid: None, code: 79, timestamp_ms: 5.0 }],
            },
            allocator: Some(AllocatorUse { allocated: 1, reserved: 4, fragmentation: 0.75, reported_at_ms: 6.0 }),
        };
        let value = to_json(&device);
        // In this order in the text handed to JavaScript.
        let text = serde_json::to_string(&device).unwrap();
        let positions: Vec<usize> = [
            "index",
            "uuid",
            "name",
            "status",
            "temperature",
            "slowdown_temperature",
            "shutdown_temperature",
            "memory_used",
            "memory_total",
            "utilization",
            "power_watts",
            "power_limit_watts",
            "throttle_reasons",
            "ecc_uncorrected",
            "retired_pages_pending",
            "remapped_rows",
            "xid_errors",
            "lost",
            "allocator",
            "error",
        ]
        .iter()
        .map(|key| text.find(&format!(r#""{key}":"#)).unwrap_or_else(|| panic!("{key} missing in {text}")))
        .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(value.as_object().unwrap().len(), positions.len());
        assert_eq!(value["temperature"], 40);
        assert_eq!(value["slowdown_temperature"], json!(null));
        assert_eq!(value["throttle_reasons"], json!(decode_throttle_reasons(0x20)));
        assert_eq!(
            value["remapped_rows"],
            json!({ "correctable": 1, "uncorrectable": 2, "pending": true, "failure": false })
        );
        let action = classify_xid(79).action.as_str();
        assert_eq!(value["xid_errors"], json!([{ "code": 79, "timestamp": 5.0, "action": action }]));
        assert_eq!(
            value["allocator"],
            json!({ "allocated": 1, "reserved": 4, "fragmentation": 0.75, "reported_at": 6.0 })
        );
    }

    #[test]
    fn incident_records_and_memory_thresholds_read_as_documented() {
        let record = IncidentRecord {
            seq: 7,
            timestamp_ms: 1_700_000_000_000,
            kind: "checkpoint_created".into(),
            severity: crate::incident::IncidentSeverity::Warn,
            message: "m".into(),
            details: json!({ "id": 1 }),
        };
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"seq":7,"timestamp":1700000000000,"kind":"checkpoint_created","severity":"warn","message":"m","details":{"id":1}}"#
        );
        let thresholds = MemoryThresholds { gpu_memory: 0.9, system_memory: 0.8, warning_interval_ms: 1000.0 };
        assert_eq!(
            to_json(&thresholds),
            json!({ "gpu_memory": 0.9, "system_memory": 0.8, "warning_interval": 1000.0 })
        );
    }

    #[test]
    fn the_xid_watch_state_reads_as_state_devices_and_error() {
        assert_eq!(to_json(&WatchState::Starting), json!({ "state": "starting", "devices": [], "error": null }));
        assert_eq!(
            to_json(&WatchState::Watching(vec![0, 1])),
            json!({ "state": "watching", "devices": [0, 1], "error": null })
        );
        assert_eq!(
            to_json(&WatchState::Retrying("x".into())),
            json!({ "state": "retrying", "devices": [], "error": "x" })
        );
    }
}
