//! Prometheus text exposition (format 0.0.4) of what the supervisor knows: `hpc_health_`
//! names, HELP and TYPE for each family, per-GPU labels `index` and `uuid`.

use super::{Counters, SystemHealth};
use crate::sampling::process_heap::ProcessHeap;
use std::collections::BTreeMap;
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
    pub accepting_requests: bool,
    /// The last check timed out or monitoring keeps failing: the last full check's verdict
    /// no longer stands, so `healthy` is 0.
    pub monitoring_unknown: bool,
    /// When the last check ended (ms since the epoch), successful or not.
    pub last_check_at_ms: Option<f64>,
    /// When the last successful check ended.
    pub last_success_at_ms: Option<f64>,
    /// Every Xid event seen since the process started, by (device, Xid).
    pub xid_totals: BTreeMap<(u32, u64), u64>,
    /// UUID of each device index, for labels.
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
    if let Some((pressure, metrics)) = health.and_then(|h| h.memory.as_ref()) {
        out.family(
            "system_memory_used_bytes",
            "gauge",
            "Memory that cannot be reclaimed (host or cgroup).",
            &[(vec![], metrics.system_used as f64)],
        );
        out.family(
            "system_memory_total_bytes",
            "gauge",
            "The smaller of physical RAM and the cgroup limit.",
            &[(vec![("source", metrics.memory_limit_source.as_str().to_owned())], metrics.system_total as f64)],
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
    let xids: Vec<(Vec<(&str, String)>, f64)> = input
        .xid_totals
        .iter()
        .map(|((device, xid), count)| {
            let mut labels = gpu_label(*device);
            labels.push(("xid", xid.to_string()));
            (labels, *count as f64)
        })
        .collect();
    out.family("gpu_xid_errors_total", "counter", "Critical Xid events seen since the process started.", &xids);
    let recoveries: Vec<(Vec<(&str, String)>, f64)> = input
        .counters
        .recoveries
        .iter()
        .map(|((kind, result), n)| (vec![("type", kind.clone()), ("result", result.clone())], *n as f64))
        .collect();
    out.family("recoveries_total", "counter", "Recoveries run, by type and result.", &recoveries);
    let incidents: Vec<(Vec<(&str, String)>, f64)> =
        input.counters.incidents.iter().map(|(kind, n)| (vec![("kind", kind.clone())], *n as f64)).collect();
    out.family("incidents_total", "counter", "Incidents recorded by the supervisor, by kind.", &incidents);
    out.family("checks_total", "counter", "Health checks run by the loop.", &[(vec![], input.counters.checks as f64)]);
    out.family(
        "check_failures_total",
        "counter",
        "Health checks that failed.",
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

    #[test]
    fn counters_render_without_health() {
        let mut counters = Counters::default();
        counters.recoveries.insert(("memory".into(), "recovered".into()), 2);
        counters.incidents.insert("memory_pressure".into(), 3);
        let mut xids = BTreeMap::new();
        xids.insert((1, 79), 4);
        let mut uuids = BTreeMap::new();
        uuids.insert(1, "GPU-1".to_owned());
        let text = render(&MetricsInput {
            health: None,
            counters: &counters,
            accepting_requests: true,
            monitoring_unknown: false,
            last_check_at_ms: Some(2_000.0),
            last_success_at_ms: Some(1_500.0),
            xid_totals: xids,
            uuids,
            process_heap: Some(ProcessHeap { in_use_bytes: 4096, free_bytes: 512 }),
        });
        assert!(text.contains("hpc_health_recoveries_total{type=\"memory\",result=\"recovered\"} 2\n"));
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
}
