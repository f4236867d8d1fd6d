//! What the supervisor sees between its full checks: the fast samples' confirmed crossings
//! and exhaustion forecasts, and the kernel's memory-pressure events. The state and the pure
//! rules are here; the loop that takes the samples is in `mod.rs`.

use crate::policy::crossing::CrossingDetector;
use crate::policy::forecast::{ExhaustionForecast, ExhaustionForecasts, ForecastPolicy};
use crate::policy::issues::{HealthIssue, IssueCode};
use crate::sampling::fast::MemorySignal;
use crate::sampling::pressure_events::PressureWatcher;
use serde_json::{json, Value};

/// The key of the forecast's intake pause in the supervisor's `paused_reasons`.
pub const FORECAST_PAUSE: &str = super::pauses::FORECAST;

/// The fast samples' judgement and the kernel watch, kept between samples.
pub struct Detection {
    pub crossing: CrossingDetector,
    pub forecasts: ExhaustionForecasts,
    /// Watching the kernel's memory-pressure events while the loop runs.
    pub pressure: Option<PressureWatcher>,
}

impl Detection {
    pub fn new(policy: ForecastPolicy) -> Self {
        Detection { crossing: CrossingDetector::new(), forecasts: ExhaustionForecasts::new(policy), pressure: None }
    }

    /// Forgets every crossing and forecast (the loop stopped: nothing stands on old data).
    pub fn reset(&mut self, policy: ForecastPolicy) {
        self.crossing = CrossingDetector::new();
        self.forecasts = ExhaustionForecasts::new(policy);
    }

    /// The sources the kernel watch holds, empty when it does not run.
    pub fn pressure_sources(&self) -> Vec<&'static str> {
        match &self.pressure {
            Some(watcher) if watcher.running() => watcher.sources().iter().map(|s| s.name()).collect(),
            _ => Vec::new(),
        }
    }
}

/// "GPU 0" or "host/cgroup": whose memory a forecast is about.
fn whose(device: Option<u32>) -> String {
    match device {
        Some(index) => format!("GPU {index}"),
        None => "host/cgroup".to_owned(),
    }
}

/// "GPU 0 memory full in ~25 s".
pub fn forecast_summary(forecast: &ExhaustionForecast) -> String {
    format!("{} memory full in ~{} s", whose(forecast.device), (forecast.eta_ms / 1000.0).round().max(0.0))
}

/// The `MEMORY_EXHAUSTION_FORECAST` issue (a warning) of a standing forecast.
pub fn forecast_issue(forecast: &ExhaustionForecast) -> HealthIssue {
    let gib_per_s = forecast.slope_bytes_per_s / (1u64 << 30) as f64;
    let used = forecast.used / forecast.total.max(1) as f64 * 100.0;
    let message = format!(
        "{} (rising {gib_per_s:.2} GiB/s, {used:.0}% used; over its threshold in ~{} s)",
        forecast_summary(forecast),
        (forecast.eta_threshold_ms / 1000.0).round().max(0.0)
    );
    HealthIssue {
        eta_ms: Some(forecast.eta_ms.max(0.0).round() as u64),
        ..HealthIssue::new(IssueCode::MemoryExhaustionForecast, forecast.device, message)
    }
}

/// Why the forecasts hold intake ("GPU 0 memory full in ~25 s; host/cgroup ..."), or `None`
/// when none stands.
pub fn forecast_pause_reason(forecasts: &[ExhaustionForecast]) -> Option<String> {
    (!forecasts.is_empty()).then(|| forecasts.iter().map(forecast_summary).collect::<Vec<_>>().join("; "))
}

/// A memory-pressure issue whose crossing the fast samples confirmed: it starts an episode
/// without waiting for `hysteresis.unhealthyAfter` full checks (two fast samples already
/// agreed, and at `intervalMs` 60000 waiting for a second full check costs a minute).
pub fn confirmed_by_fast_samples(issue: &HealthIssue, crossed: &[MemorySignal]) -> bool {
    let signal = match (issue.code, issue.device) {
        (IssueCode::GpuMemoryPressure, Some(index)) => MemorySignal::Gpu(index),
        (IssueCode::SystemMemoryPressure, _) => MemorySignal::Host,
        _ => return false,
    };
    crossed.contains(&signal)
}

/// `status().detection`'s entry for one forecast.
pub fn forecast_json(forecast: &ExhaustionForecast) -> Value {
    json!({
        "device": forecast.device,
        "eta_ms": forecast.eta_ms.max(0.0).round(),
        "eta_threshold_ms": forecast.eta_threshold_ms.max(0.0).round(),
        "slope_bytes_per_s": forecast.slope_bytes_per_s.round(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::issues::{Action, Severity};

    fn forecast(device: Option<u32>, eta_ms: f64) -> ExhaustionForecast {
        ExhaustionForecast {
            device,
            eta_ms,
            eta_threshold_ms: eta_ms / 2.0,
            slope_bytes_per_s: (1u64 << 30) as f64,
            used: (40u64 << 30) as f64,
            total: 80 << 30,
            at_ms: 0.0,
        }
    }

    #[test]
    fn a_forecast_is_a_warning_with_its_eta_and_no_recovery() {
        let issue = forecast_issue(&forecast(Some(0), 25_400.0));
        assert_eq!(issue.code, IssueCode::MemoryExhaustionForecast);
        assert_eq!(
            (issue.severity, issue.action, issue.device, issue.eta_ms),
            (Severity::Warn, Action::None, Some(0), Some(25_400))
        );
        assert!(
            issue.message.starts_with("GPU 0 memory full in ~25 s (rising 1.00 GiB/s, 50% used"),
            "{}",
            issue.message
        );
        assert_eq!(crate::supervisor::planner::recovery_for(&issue, true), None);
        assert!(!crate::supervisor::planner::bypasses_hysteresis(&issue));
        assert_eq!(forecast_issue(&forecast(None, 9_000.0)).device, None);
    }

    #[test]
    fn the_pause_reason_names_every_standing_forecast() {
        assert_eq!(forecast_pause_reason(&[]), None);
        assert_eq!(
            forecast_pause_reason(&[forecast(Some(1), 30_000.0), forecast(None, 12_400.0)]).as_deref(),
            Some("GPU 1 memory full in ~30 s; host/cgroup memory full in ~12 s")
        );
    }

    #[test]
    fn only_the_crossed_signal_s_pressure_issue_is_confirmed() {
        let gpu1 = HealthIssue::new(IssueCode::GpuMemoryPressure, Some(1), "m".into());
        let host = HealthIssue::new(IssueCode::SystemMemoryPressure, None, "m".into());
        let hot = HealthIssue::new(IssueCode::TemperatureHigh, Some(1), "t".into());
        let crossed = [MemorySignal::Gpu(1)];
        assert!(confirmed_by_fast_samples(&gpu1, &crossed));
        assert!(!confirmed_by_fast_samples(&host, &crossed));
        assert!(!confirmed_by_fast_samples(&hot, &crossed));
        assert!(!confirmed_by_fast_samples(
            &HealthIssue::new(IssueCode::GpuMemoryPressure, Some(0), "m".into()),
            &crossed
        ));
        assert!(confirmed_by_fast_samples(&host, &[MemorySignal::Host]));
    }
}
