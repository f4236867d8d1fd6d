//! The GPU health rules, with NVIDIA DCGM's health watches as the model. Every issue says
//! its code, severity, device, a sentence a person understands, and the action.

use super::issues::{worst_status, Action, HealthIssue, IssueCode, Severity};
use super::thresholds::GpuHealthPolicy;
use super::xid_catalog::classify_xid;
use crate::sampling::gpu::{GpuDeviceSample, GpuSample};
use crate::sampling::xid_watch::XidEvent;
use std::collections::BTreeMap;

/// Thermal reasons among NVML's throttle reasons: software and hardware thermal slowdown.
pub const THERMAL_THROTTLE_BITS: u64 = 0x20 | 0x40;
/// An external power brake (the system asked the GPU to slow down).
pub const POWER_BRAKE_BITS: u64 = 0x80;

/// What the worker's caching allocator reported for one device (summed over processes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllocatorUse {
    pub allocated: u64,
    pub reserved: u64,
    /// The worst `(reserved − allocated) / reserved` of the processes on the device.
    pub fragmentation: f64,
    pub reported_at_ms: f64,
}

/// `(reserved − allocated) / reserved`: the share of what the allocator holds that it does
/// not use. 0 when it holds nothing.
pub fn fragmentation(allocated: u64, reserved: u64) -> f64 {
    if reserved == 0 {
        0.0
    } else {
        reserved.saturating_sub(allocated) as f64 / reserved as f64
    }
}

/// One device's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceVerdict {
    pub status: &'static str,
    /// Xid events of this device inside the window, oldest first.
    pub xid_errors: Vec<XidEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuVerdict {
    pub issues: Vec<HealthIssue>,
    pub status: &'static str,
    pub healthy: bool,
    /// By device index, for every sampled device.
    pub devices: BTreeMap<u32, DeviceVerdict>,
}

fn gpu_name(device: &GpuDeviceSample) -> String {
    match &device.uuid {
        Some(uuid) => format!("GPU {} ({uuid})", device.index),
        None => format!("GPU {}", device.index),
    }
}

fn iso_time(ms: f64) -> String {
    // Seconds since the epoch in UTC, formatted without pulling in a date crate.
    let secs = (ms / 1000.0).floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

fn device_issues(
    device: &GpuDeviceSample,
    allocator: Option<&AllocatorUse>,
    xids: &[XidEvent],
    policy: &GpuHealthPolicy,
) -> Vec<HealthIssue> {
    let mut issues = Vec::new();
    let name = gpu_name(device);
    let at = Some(device.index);
    if device.lost {
        issues.push(HealthIssue::new(
            IssueCode::GpuLost,
            at,
            format!("{name} has fallen off the bus or is otherwise inaccessible; NVML cannot reach it"),
        ));
    }
    if let Some(signals) = &device.signals {
        if let Some(temperature) = signals.temperature {
            if f64::from(temperature) >= policy.temperature {
                let limits = match (signals.slowdown_temperature, signals.shutdown_temperature) {
                    (Some(slow), Some(stop)) => {
                        format!(" (it slows itself down at {slow} °C and shuts down at {stop} °C)")
                    }
                    (Some(slow), None) => format!(" (it slows itself down at {slow} °C)"),
                    _ => String::new(),
                };
                issues.push(HealthIssue::new(
                    IssueCode::TemperatureHigh,
                    at,
                    format!(
                        "{name} is at {temperature} °C, at or above the {} °C threshold{limits}; check its cooling and airflow",
                        policy.temperature
                    ),
                ));
            }
        }
        if let Some(reasons) = signals.throttle_reasons {
            if reasons & THERMAL_THROTTLE_BITS != 0 {
                issues.push(HealthIssue::new(
                    IssueCode::ThermalThrottle,
                    at,
                    format!("{name} is holding its clocks down because it is too hot; work runs slower"),
                ));
            }
            if reasons & POWER_BRAKE_BITS != 0 {
                issues.push(HealthIssue::new(
                    IssueCode::PowerBrake,
                    at,
                    format!("{name} is slowed by an external power brake (the system's power supply or management asked it to)"),
                ));
            }
        }
        if let Some(count) = signals.ecc_uncorrected.filter(|&c| c > 0) {
            issues.push(HealthIssue::new(
                IssueCode::EccUncorrected,
                at,
                format!("{name} has had {count} uncorrectable ECC memory error(s) since the driver loaded; its memory cannot be trusted until the GPU is reset"),
            ));
        }
        if signals.retired_pages_pending == Some(true) {
            issues.push(HealthIssue::new(
                IssueCode::RetiredPagesPending,
                at,
                format!("{name} has memory pages waiting to be retired; they are retired at the next GPU reset"),
            ));
        }
        if let Some(rows) = signals.remapped_rows {
            if rows.failure {
                issues.push(HealthIssue::new(
                    IssueCode::RowRemapFailed,
                    at,
                    format!("{name} failed to remap a memory row: its memory can no longer repair itself; reset it, and replace it if this returns"),
                ));
            } else if rows.pending {
                issues.push(HealthIssue::new(
                    IssueCode::RowRemapPending,
                    at,
                    format!("{name} has memory rows waiting to be remapped; they are remapped at the next GPU reset"),
                ));
            }
        }
    }
    if let Some(use_) = allocator {
        if use_.fragmentation >= policy.memory_fragmentation {
            issues.push(HealthIssue::new(
                IssueCode::FragmentationHigh,
                at,
                format!(
                    "the allocator on {name} holds {} bytes but uses {} ({:.0}% unused, threshold {:.0}%); clearing its cache returns the rest",
                    use_.reserved,
                    use_.allocated,
                    use_.fragmentation * 100.0,
                    policy.memory_fragmentation * 100.0
                ),
            ));
        }
    }
    // One issue per Xid code on this device, the catalog deciding severity and action.
    let mut by_code: BTreeMap<u64, (usize, f64)> = BTreeMap::new();
    for event in xids {
        let entry = by_code.entry(event.code).or_insert((0, event.timestamp_ms));
        entry.0 += 1;
        entry.1 = entry.1.max(event.timestamp_ms);
    }
    for (code, (count, last)) in by_code {
        let xid = classify_xid(code);
        let whose = if xid.application_error { " (an application error, not a GPU failure)" } else { "" };
        let todo = match xid.action {
            Action::None => "no action needed beyond watching it".to_owned(),
            action => format!("NVIDIA's resolution: {}", action_words(action)),
        };
        issues.push(HealthIssue {
            code: IssueCode::Xid,
            severity: xid.severity,
            device: at,
            message: format!(
                "Xid {code} on {name}{whose}: {}; seen {count} time(s), last at {}; {todo}",
                xid.meaning,
                iso_time(last)
            ),
            action: xid.action,
            eta_ms: None,
        });
    }
    issues
}

/// What an action means, in words.
pub fn action_words(action: Action) -> &'static str {
    match action {
        Action::None => "none",
        Action::ClearCache => "clear the allocator's cache",
        Action::RestartApp => "restart the application",
        Action::ResetGpu => "reset the GPU (nvidia-smi -r, with no process using it)",
        Action::RebootNode => "reboot the node",
    }
}

/// Applies every rule to one sample.
pub fn evaluate_gpu_health(
    sample: &GpuSample,
    allocator: &BTreeMap<u32, AllocatorUse>,
    xids: &[XidEvent],
    policy: &GpuHealthPolicy,
) -> GpuVerdict {
    let mut issues = Vec::new();
    let mut devices = BTreeMap::new();
    for device in &sample.devices {
        let own_xids: Vec<XidEvent> = xids.iter().filter(|e| e.device == device.index).cloned().collect();
        let found = device_issues(device, allocator.get(&device.index), &own_xids, policy);
        devices.insert(device.index, DeviceVerdict { status: worst_status(&found), xid_errors: own_xids });
        issues.extend(found);
    }
    if let Some(expected) = policy.expected_gpus {
        let present = sample.devices.len() as u32;
        if present < expected {
            let why = sample.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
            issues.push(HealthIssue::new(
                IssueCode::GpuMissing,
                None,
                format!("{present} GPU(s) visible, {expected} expected{why}; a GPU that is not enumerated needs the node checked and rebooted"),
            ));
        }
    }
    let status = worst_status(&issues);
    GpuVerdict { healthy: !issues.iter().any(|i| i.severity == Severity::Fail), status, issues, devices }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::gpu::{DeviceSignals, RemappedRows};

    fn device(index: u32, signals: DeviceSignals) -> GpuDeviceSample {
        GpuDeviceSample {
            index,
            uuid: Some(format!("GPU-{index}")),
            name: Some("test".into()),
            used: 0,
            total: 100,
            lost: false,
            error: None,
            signals: Some(signals),
        }
    }

    fn healthy_signals() -> DeviceSignals {
        DeviceSignals {
            temperature: Some(40),
            slowdown_temperature: Some(87),
            shutdown_temperature: Some(92),
            throttle_reasons: Some(0),
            ecc_uncorrected: Some(0),
            retired_pages_pending: Some(false),
            remapped_rows: Some(RemappedRows { correctable: 0, uncorrectable: 0, pending: false, failure: false }),
            ..Default::default()
        }
    }

    fn sample(devices: Vec<GpuDeviceSample>) -> GpuSample {
        GpuSample { available: !devices.is_empty(), error: None, devices }
    }

    fn codes(verdict: &GpuVerdict) -> Vec<(&'static str, &'static str, &'static str)> {
        verdict.issues.iter().map(|i| (i.code.as_str(), i.severity.as_str(), i.action.as_str())).collect()
    }

    fn judge(devices: Vec<GpuDeviceSample>) -> GpuVerdict {
        evaluate_gpu_health(&sample(devices), &BTreeMap::new(), &[], &GpuHealthPolicy::default())
    }

    #[test]
    fn healthy_device_passes() {
        let verdict = judge(vec![device(0, healthy_signals())]);
        assert_eq!((verdict.status, verdict.healthy), ("pass", true));
        assert!(verdict.issues.is_empty());
    }

    #[test]
    fn temperature_at_the_threshold_fails() {
        let below = judge(vec![device(0, DeviceSignals { temperature: Some(79), ..healthy_signals() })]);
        assert!(below.healthy);
        let at = judge(vec![device(0, DeviceSignals { temperature: Some(80), ..healthy_signals() })]);
        assert_eq!(codes(&at), [("TEMPERATURE_HIGH", "fail", "none")]);
        assert!(at.issues[0].message.contains("slows itself down at 87 °C"));
        assert!(!at.healthy);
    }

    #[test]
    fn each_signal_rule() {
        let cases: Vec<(DeviceSignals, Vec<(&str, &str, &str)>)> = vec![
            (
                DeviceSignals { throttle_reasons: Some(0x20), ..healthy_signals() },
                vec![("THERMAL_THROTTLE", "warn", "none")],
            ),
            (
                DeviceSignals { throttle_reasons: Some(0x40 | 0x8), ..healthy_signals() },
                vec![("THERMAL_THROTTLE", "warn", "none")],
            ),
            (DeviceSignals { throttle_reasons: Some(0x4), ..healthy_signals() }, vec![]),
            (
                DeviceSignals { throttle_reasons: Some(0x80), ..healthy_signals() },
                vec![("POWER_BRAKE", "warn", "none")],
            ),
            (
                DeviceSignals { ecc_uncorrected: Some(2), ..healthy_signals() },
                vec![("ECC_UNCORRECTED", "fail", "reset_gpu")],
            ),
            (
                DeviceSignals { retired_pages_pending: Some(true), ..healthy_signals() },
                vec![("RETIRED_PAGES_PENDING", "warn", "reset_gpu")],
            ),
            (
                DeviceSignals {
                    remapped_rows: Some(RemappedRows {
                        correctable: 0,
                        uncorrectable: 1,
                        pending: true,
                        failure: false,
                    }),
                    ..healthy_signals()
                },
                vec![("ROW_REMAP_PENDING", "warn", "reset_gpu")],
            ),
            (
                DeviceSignals {
                    remapped_rows: Some(RemappedRows {
                        correctable: 0,
                        uncorrectable: 1,
                        pending: true,
                        failure: true,
                    }),
                    ..healthy_signals()
                },
                vec![("ROW_REMAP_FAILED", "fail", "reset_gpu")],
            ),
        ];
        for (signals, expected) in cases {
            let verdict = judge(vec![device(0, signals.clone())]);
            assert_eq!(codes(&verdict), expected, "{signals:?}");
            assert_eq!(verdict.healthy, !expected.iter().any(|(_, s, _)| *s == "fail"));
        }
    }

    #[test]
    fn unsupported_signals_are_not_issues() {
        let verdict = judge(vec![device(0, DeviceSignals::default())]);
        assert!(verdict.issues.is_empty());
    }

    #[test]
    fn lost_and_missing() {
        let mut lost = device(1, DeviceSignals::default());
        lost.lost = true;
        lost.signals = None;
        let verdict = judge(vec![device(0, healthy_signals()), lost]);
        assert_eq!(codes(&verdict), [("GPU_LOST", "fail", "reset_gpu")]);
        assert_eq!(verdict.issues[0].device, Some(1));
        assert_eq!(verdict.devices[&0].status, "pass");
        assert_eq!(verdict.devices[&1].status, "fail");

        let policy = GpuHealthPolicy { expected_gpus: Some(2), ..Default::default() };
        let verdict = evaluate_gpu_health(&sample(vec![device(0, healthy_signals())]), &BTreeMap::new(), &[], &policy);
        assert_eq!(codes(&verdict), [("GPU_MISSING", "fail", "reboot_node")]);
        assert_eq!(verdict.issues[0].device, None);
        // No GPU at all is healthy unless GPUs are expected.
        assert!(judge(vec![]).healthy);
        let none_expected = GpuHealthPolicy { expected_gpus: Some(0), ..Default::default() };
        assert!(evaluate_gpu_health(&sample(vec![]), &BTreeMap::new(), &[], &none_expected).healthy);
    }

    #[test]
    fn fragmentation_at_the_threshold_fails_with_clear_cache() {
        let mut allocator = BTreeMap::new();
        allocator.insert(
            0,
            AllocatorUse { allocated: 71, reserved: 100, fragmentation: fragmentation(71, 100), reported_at_ms: 0.0 },
        );
        let policy = GpuHealthPolicy::default();
        let s = sample(vec![device(0, healthy_signals())]);
        assert!(evaluate_gpu_health(&s, &allocator, &[], &policy).healthy);
        allocator.insert(
            0,
            AllocatorUse { allocated: 70, reserved: 100, fragmentation: fragmentation(70, 100), reported_at_ms: 0.0 },
        );
        let verdict = evaluate_gpu_health(&s, &allocator, &[], &policy);
        assert_eq!(codes(&verdict), [("FRAGMENTATION_HIGH", "fail", "clear_cache")]);
        assert_eq!(fragmentation(0, 0), 0.0);
    }

    #[test]
    fn xids_follow_the_catalog_one_issue_per_code() {
        let event = |device, code, t| XidEvent { device, uuid: None, code, timestamp_ms: t };
        let xids =
            vec![event(0, 79, 1.0), event(0, 79, 2.0), event(0, 13, 3.0), event(1, 999_999, 4.0), event(1, 94, 5.0)];
        let s = sample(vec![device(0, healthy_signals()), device(1, healthy_signals())]);
        let verdict = evaluate_gpu_health(&s, &BTreeMap::new(), &xids, &GpuHealthPolicy::default());
        assert_eq!(
            codes(&verdict),
            [
                ("XID", "warn", "none"),
                ("XID", "fail", "reboot_node"),
                ("XID", "fail", "restart_app"),
                ("XID", "warn", "none")
            ]
        );
        assert!(verdict.issues[1].message.contains("seen 2 time(s)"), "{}", verdict.issues[1].message);
        assert!(verdict.issues[0].message.contains("application error"));
        assert_eq!(verdict.devices[&0].xid_errors.len(), 3);
        assert_eq!(verdict.devices[&1].xid_errors.len(), 2);
    }

    #[test]
    fn iso_time_formats_utc() {
        assert_eq!(iso_time(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(1_795_925_736_133.0), "2026-11-29T04:15:36Z");
    }
}
