//! Prometheus text exposition (format 0.0.4) of what the supervisor knows: `hpc_health_`
//! names, HELP and TYPE for each family, per-GPU labels `index` and `uuid`. Every counter has
//! each label set it can take (known now) from 0, so `increase()` sees its first event.

use super::planner::{ActionKind, ActionResult};
use super::{pauses, Counters, SystemHealth};
use crate::incident::IncidentKind;
use crate::policy::xid_catalog::XID_CATALOG;
use crate::sampling::process_heap::ProcessHeap;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A number as Prometheus reads it.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value}")
    }
}

/// Every key of `known` at 0, with the counts of `counts` (which may hold others).
fn counted<K: Ord + Copy>(known: impl IntoIterator<Item = K>, counts: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    let mut all: BTreeMap<K, u64> = known.into_iter().map(|k| (k, 0)).collect();
    all.extend(counts);
    all
}

/// Builds the exposition family by family.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(Vec<(&str, String)>, f64)]) {
        let _ = writeln!(self.text, "# HELP hpc_health_{name} {help}");
        let _ = writeln!(self.text, "# TYPE hpc_health_{name} {kind}");
        for (labels, value) in samples {
            let labels = if labels.is_empty() {
                String::new()
            } else {
                let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                format!("{{{}}}", inner.join(","))
            };
            let _ = writeln!(self.text, "hpc_health_{name}{labels} {}", number(*value));
        }
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// Everything the metrics are built from.
pub struct MetricsInput<'a> {
    pub health: Option<&'a SystemHealth>,
    pub counters: &'a Counters,
    /// Incidents raised by the supervisor and its parts, by kind.
    pub incidents: &'a BTreeMap<IncidentKind, u64>,
    pub accepting_requests: bool,
    /// Why the supervisor holds intake now (`pauses`).
    pub paused_reasons: Vec<&'static str>,
    /// The last check timed out or monitoring keeps failing: the last full check's verdict
    /// no longer stands, so `healthy` is 0.
    pub monitoring_unknown: bool,
    /// When the last check ended (ms since the epoch), successful or not.
    pub last_check_at_ms: Option<f64>,
    /// When the last successful check ended.
    pub last_success_at_ms: Option<f64>,
    /// Every Xid event seen since the process started, by (device, Xid).
    pub xid_totals: BTreeMap<(u32, u64), u64>,
    /// UUID of each device index known so far, for labels (and the Xid series at 0).
    pub uuids: BTreeMap<u32, String>,
    /// This process's C heap, where the allocator can tell.
    pub process_heap: Option<ProcessHeap>,
}

pub fn render(input: &MetricsInput) -> String {
    let mut out = Exposition::default();
    let gpu_label = |index: u32| -> Vec<(&str, String)> {
        vec![("index", index.to_string()), ("uuid", input.uuids.get(&index).cloned().unwrap_or_default())]
    };
    let health = input.health;
    out.family(
        "healthy",
        "gauge",
        "1 when the last full check found no failing issue and no check has failed to answer since.",
        &[(vec![], health.map_or(0.0, |h| f64::from(u8::from(h.healthy && !input.monitoring_unknown))))],
    );
    out.family(
        "accepting_requests",
        "gauge",
        "1 when intake is open.",
        &[(vec![], f64::from(u8::from(input.accepting_requests)))],
    );
    let paused: Vec<(Vec<(&str, String)>, f64)> = pauses::ALL
        .iter()
        .map(|reason| {
            (vec![("reason", (*reason).to_owned())], f64::from(u8::from(input.paused_reasons.contains(reason))))
        })
        .collect();
    out.family("intake_paused", "gauge", "1 while the supervisor holds intake for this reason.", &paused);
    if let Some((pressure, metrics)) = health.and_then(|h| h.memory.as_ref()) {
        // The same labels on both, so that used / total divides.
        let source = || vec![("source", metrics.memory_limit_source.as_str().to_owned())];
        out.family(
            "system_memory_used_bytes",
            "gauge",
            "Memory that cannot be reclaimed (host or cgroup, as source says).",
            &[(source(), metrics.system_used as f64)],
        );
        out.family(
            "system_memory_total_bytes",
            "gauge",
            "The smaller of physical RAM and the cgroup limit (source says which).",
            &[(source(), metrics.system_total as f64)],
        );
        out.family(
            "system_memory_pressure",
            "gauge",
            "1 when system memory is above its threshold.",
            &[(vec![], f64::from(u8::from(pressure.system_pressure)))],
        );
        if let Some(psi) = metrics.psi {
            out.family(
                "memory_psi_some_avg10",
                "gauge",
                "Percent of the last 10 s some tasks stalled on memory.",
                &[(vec![], psi.some_avg10)],
            );
            out.family(
                "memory_psi_full_avg10",
                "gauge",
                "Percent of the last 10 s all tasks stalled on memory.",
                &[(vec![], psi.full_avg10)],
            );
        }
    }
    if let Some(gpu) = health.and_then(|h| h.gpu.as_ref()) {
        let per_device =
            |f: &dyn Fn(&crate::monitors::gpu_health::DeviceHealth) -> Option<f64>| -> Vec<(Vec<(&str, String)>, f64)> {
                gpu.devices.iter().filter_map(|d| f(d).map(|v| (gpu_label(d.sample.index), v))).collect()
            };
        out.family(
            "gpu_memory_used_bytes",
            "gauge",
            "GPU memory in use.",
            &per_device(&|d| (!d.sample.lost).then_some(d.sample.used as f64)),
        );
        out.family(
            "gpu_memory_total_bytes",
            "gauge",
            "GPU memory installed.",
            &per_device(&|d| (!d.sample.lost).then_some(d.sample.total as f64)),
        );
        out.family(
            "gpu_temperature_celsius",
            "gauge",
            "GPU temperature.",
            &per_device(&|d| d.sample.signals.as_ref()?.temperature.map(f64::from)),
        );
        out.family(
            "gpu_power_watts",
            "gauge",
            "GPU power draw.",
            &per_device(&|d| d.sample.signals.as_ref()?.power_watts),
        );
        out.family(
            "gpu_power_limit_watts",
            "gauge",
            "GPU enforced power limit.",
            &per_device(&|d| d.sample.signals.as_ref()?.power_limit_watts),
        );
        out.family(
            "gpu_thermal_throttle",
            "gauge",
            "1 when the GPU holds its clocks down for heat.",
            &per_device(&|d| {
                let reasons = d.sample.signals.as_ref()?.throttle_reasons?;
                Some(f64::from(u8::from(reasons & crate::policy::gpu_health::THERMAL_THROTTLE_BITS != 0)))
            }),
        );
        out.family(
            "gpu_lost",
            "gauge",
            "1 when the GPU fell off the bus.",
            &per_device(&|d| Some(f64::from(u8::from(d.sample.lost)))),
        );
        let status = |s: &str| match s {
            "pass" => 0.0,
            "warn" => 1.0,
            _ => 2.0,
        };
        out.family("gpu_status", "gauge", "0 pass, 1 warn, 2 fail.", &per_device(&|d| Some(status(d.verdict.status))));
    }
    if let Some(health) = health {
        // One series per (code, device, severity): two issues alike (two Xids) are one series.
        let active: BTreeSet<(&str, String, &str)> = health
            .issues
            .iter()
            .map(|i| (i.code.as_str(), i.device.map(|d| d.to_string()).unwrap_or_default(), i.severity.as_str()))
            .collect();
        let issues: Vec<(Vec<(&str, String)>, f64)> = active
            .into_iter()
            .map(|(code, device, severity)| {
                (vec![("code", code.to_owned()), ("device", device), ("severity", severity.to_owned())], 1.0)
            })
            .collect();
        out.family(
            "issue",
            "gauge",
            "1 for each issue the last full check found (device empty for the machine as a whole).",
            &issues,
        );
    }
    // Every catalogued Xid of every known device from 0, then every Xid seen.
    let mut xid_counts: BTreeMap<(u32, u64), u64> =
        input.uuids.keys().flat_map(|&device| XID_CATALOG.iter().map(move |e| ((device, e.code), 0))).collect();
    xid_counts.extend(&input.xid_totals);
    let xids: Vec<(Vec<(&str, String)>, f64)> = xid_counts
        .iter()
        .map(|((device, xid), count)| {
            let mut labels = gpu_label(*device);
            labels.push(("xid", xid.to_string()));
            (labels, *count as f64)
        })
        .collect();
    out.family("gpu_xid_errors_total", "counter", "Xid events seen since the process started, by Xid.", &xids);
    let recoveries: Vec<(Vec<(&str, String)>, f64)> = counted(
        ActionKind::RECOVERIES.iter().flat_map(|&k| ActionResult::OF_RUNS.iter().map(move |&r| (k, r))),
        &input.counters.recoveries,
    )
    .into_iter()
    .map(|((kind, result), n)| {
        (vec![("type", kind.as_str().to_owned()), ("result", result.as_str().to_owned())], n as f64)
    })
    .collect();
    out.family("recoveries_total", "counter", "Recoveries run, by type and result.", &recoveries);
    let intake_pauses: Vec<(Vec<(&str, String)>, f64)> = counted(pauses::ALL, &input.counters.intake_pauses)
        .into_iter()
        .map(|(reason, n)| (vec![("reason", reason.to_owned())], n as f64))
        .collect();
    out.family("intake_pauses_total", "counter", "Intake pauses the supervisor began, by reason.", &intake_pauses);
    let incidents: Vec<(Vec<(&str, String)>, f64)> = counted(IncidentKind::ALL, input.incidents)
        .into_iter()
        .map(|(kind, n)| (vec![("kind", kind.as_str().to_owned())], n as f64))
        .collect();
    out.family(
        "incidents_total",
        "counter",
        "Incidents raised by the supervisor, its recoveries and its checkpoint manager, by kind.",
        &incidents,
    );
    out.family(
        "checks_total",
        "counter",
        "Successful health checks of the loop.",
        &[(vec![], input.counters.checks as f64)],
    );
    out.family(
        "check_failures_total",
        "counter",
        "Health checks of the loop that failed or timed out.",
        &[(vec![], input.counters.check_failures as f64)],
    );
    out.family(
        "check_duration_seconds",
        "gauge",
        "Duration of the last health check.",
        &[(vec![], input.counters.last_check_duration_ms / 1000.0)],
    );
    if let Some(at) = input.last_check_at_ms {
        out.family(
            "last_check_timestamp_seconds",
            "gauge",
            "When the last health check ended, successful or not.",
            &[(vec![], at / 1000.0)],
        );
    }
    if let Some(at) = input.last_success_at_ms {
        out.family(
            "last_successful_check_timestamp_seconds",
            "gauge",
            "When the last successful health check ended; stale when checks hang or fail.",
            &[(vec![], at / 1000.0)],
        );
    }
    if let Some(at) = input.counters.last_checkpoint_ms {
        out.family(
            "last_checkpoint_timestamp_seconds",
            "gauge",
            "When the last checkpoint was taken.",
            &[(vec![], at / 1000.0)],
        );
    }
    if let Some(heap) = input.process_heap {
        out.family(
            "process_heap_bytes",
            "gauge",
            "This process's C heap as its allocator counts it: in live allocations (state=in_use), kept free in its arenas (state=free).",
            &[
                (vec![("state", "in_use".to_owned())], heap.in_use_bytes as f64),
                (vec![("state", "free".to_owned())], heap.free_bytes as f64),
            ],
        );
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_escaped_labels() {
        let mut e = Exposition::default();
        e.family("x", "gauge", "An x.", &[(vec![("uuid", "a\"b\\c\nd".to_owned())], 1.5), (vec![], f64::NAN)]);
        let text = e.finish();
        assert_eq!(text, "# HELP hpc_health_x An x.\n# TYPE hpc_health_x gauge\nhpc_health_x{uuid=\"a\\\"b\\\\c\\nd\"} 1.5\nhpc_health_x NaN\n");
    }

    fn input<'a>(counters: &'a Counters, incidents: &'a BTreeMap<IncidentKind, u64>) -> MetricsInput<'a> {
        MetricsInput {
            health: None,
            counters,
            incidents,
            accepting_requests: true,
            paused_reasons: vec![],
            monitoring_unknown: false,
            last_check_at_ms: None,
            last_success_at_ms: None,
            xid_totals: BTreeMap::new(),
            uuids: BTreeMap::new(),
            process_heap: None,
        }
    }

    #[test]
    fn counters_render_without_health() {
        let mut counters = Counters::default();
        counters.recoveries.insert((ActionKind::Memory, ActionResult::Recovered), 2);
        counters.intake_pauses.insert(pauses::THERMAL, 1);
        let incidents = BTreeMap::from([(IncidentKind::MemoryPressure, 3)]);
        let mut xids = BTreeMap::new();
        xids.insert((1, 79), 4);
        let mut uuids = BTreeMap::new();
        uuids.insert(1, "GPU-1".to_owned());
        let text = render(&MetricsInput {
            last_check_at_ms: Some(2_000.0),
            last_success_at_ms: Some(1_500.0),
            xid_totals: xids,
            uuids,
            process_heap: Some(ProcessHeap { in_use_bytes: 4096, free_bytes: 512 }),
            paused_reasons: vec![pauses::BUDGET],
            ..input(&counters, &incidents)
        });
        assert!(text.contains("hpc_health_recoveries_total{type=\"memory\",result=\"recovered\"} 2\n"));
        assert!(text.contains("hpc_health_intake_pauses_total{reason=\"thermal\"} 1\n"));
        assert!(text.contains("hpc_health_intake_paused{reason=\"budget\"} 1\n"));
        assert!(text.contains("hpc_health_intake_paused{reason=\"thermal\"} 0\n"));
        assert!(text.contains("hpc_health_incidents_total{kind=\"memory_pressure\"} 3\n"));
        assert!(text.contains("hpc_health_gpu_xid_errors_total{index=\"1\",uuid=\"GPU-1\",xid=\"79\"} 4\n"));
        assert!(text.contains("hpc_health_healthy 0\n"));
        assert!(text.contains("hpc_health_accepting_requests 1\n"));
        assert!(text.contains("hpc_health_last_check_timestamp_seconds 2\n"));
        assert!(text.contains("hpc_health_last_successful_check_timestamp_seconds 1.5\n"));
        assert!(text.contains("hpc_health_process_heap_bytes{state=\"in_use\"} 4096\n"));
        assert!(text.contains("hpc_health_process_heap_bytes{state=\"free\"} 512\n"));
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP hpc_health_")
                    || line.starts_with("# TYPE hpc_health_")
                    || line.starts_with("hpc_health_"),
                "{line}"
            );
        }
    }

    /// `increase()` needs a sample before the first event: every label set known is there at 0.
    #[test]
    fn every_known_label_set_is_at_zero_before_its_first_event() {
        let counters = Counters::default();
        let incidents = BTreeMap::new();
        let uuids = BTreeMap::from([(0, "GPU-0".to_owned()), (1, "GPU-1".to_owned())]);
        let text = render(&MetricsInput { uuids, ..input(&counters, &incidents) });
        let series = |name: &str| text.lines().filter(|l| l.starts_with(&format!("hpc_health_{name}{{"))).count();
        assert_eq!(series("recoveries_total"), ActionKind::RECOVERIES.len() * ActionResult::OF_RUNS.len());
        assert_eq!(series("incidents_total"), IncidentKind::ALL.len());
        assert_eq!(series("intake_pauses_total"), pauses::ALL.len());
        assert_eq!(series("gpu_xid_errors_total"), 2 * XID_CATALOG.len());
        for line in [
            "hpc_health_gpu_xid_errors_total{index=\"0\",uuid=\"GPU-0\",xid=\"79\"} 0",
            "hpc_health_gpu_xid_errors_total{index=\"1\",uuid=\"GPU-1\",xid=\"48\"} 0",
            "hpc_health_recoveries_total{type=\"gpu\",result=\"failed\"} 0",
            "hpc_health_recoveries_total{type=\"device_lost\",result=\"recovered\"} 0",
            "hpc_health_incidents_total{kind=\"recovery_finished\"} 0",
            "hpc_health_incidents_total{kind=\"checkpoint_created\"} 0",
            "hpc_health_intake_pauses_total{reason=\"forecast\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        // A pause is not a recovery.
        assert!(!text.contains("result=\"paused\""));
    }

    #[test]
    fn memory_used_and_total_share_labels_and_each_active_issue_is_one_series() {
        use crate::policy::issues::{HealthIssue, IssueCode};
        use crate::sampling::memory::MemoryLimitSource;
        let metrics = crate::sampling::memory::MemoryMetrics {
            timestamp_ms: 0.0,
            gpu_used: 0,
            gpu_total: 0,
            system_used: 3,
            system_total: 8,
            system_error: None,
            memory_limit_source: MemoryLimitSource::Cgroup,
            psi: None,
            gpu_available: false,
            gpu_error: None,
            gpus: vec![],
            cgroup: None,
        };
        let pressure = crate::policy::pressure::MemoryPressure {
            gpu_pressure: false,
            system_pressure: true,
            gpu_ratio: 0.0,
            system_ratio: 0.375,
            gpus: vec![],
        };
        let issues = vec![
            HealthIssue::new(IssueCode::Xid, Some(1), "Xid 79".into()),
            HealthIssue::new(IssueCode::Xid, Some(1), "Xid 48".into()),
            HealthIssue::new(IssueCode::SystemMemoryPressure, None, "full".into()),
        ];
        let health = SystemHealth {
            healthy: false,
            check_type: super::super::CheckType::Full,
            timestamp_ms: 0.0,
            duration_ms: 0.0,
            memory: Some((pressure, metrics)),
            gpu: None,
            issues: issues.clone(),
            accepting_requests: true,
        };
        let counters = Counters::default();
        let incidents = BTreeMap::new();
        let text = render(&MetricsInput { health: Some(&health), ..input(&counters, &incidents) });
        assert!(text.contains("\nhpc_health_system_memory_used_bytes{source=\"cgroup\"} 3\n"), "{text}");
        assert!(text.contains("\nhpc_health_system_memory_total_bytes{source=\"cgroup\"} 8\n"), "{text}");
        let issue_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("hpc_health_issue{")).collect();
        let xid =
            format!("hpc_health_issue{{code=\"XID\",device=\"1\",severity=\"{}\"}} 1", issues[0].severity.as_str());
        let system = format!(
            "hpc_health_issue{{code=\"SYSTEM_MEMORY_PRESSURE\",device=\"\",severity=\"{}\"}} 1",
            issues[2].severity.as_str()
        );
        assert_eq!(issue_lines, vec![system.as_str(), xid.as_str()]);
    }
}
