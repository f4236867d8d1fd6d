//! Every threshold the package knows, with its default and allowed range, in one table.

use std::fmt;

/// The allowed values of one numeric option.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdSpec {
    /// The option as users write it, e.g. `thresholds.gpu_memory` or `expectedGpus`.
    pub name: &'static str,
    pub default: f64,
    pub min: f64,
    /// Whether `min` itself is allowed.
    pub min_inclusive: bool,
    pub max: f64,
    pub integer: bool,
}

impl ThresholdSpec {
    /// A range in the notation of the error messages: `(0, 1]`, `[0, 2147483647]`.
    pub fn describe_range(&self) -> String {
        let open = if self.min_inclusive { '[' } else { '(' };
        let kind = if self.integer { "an integer" } else { "a number" };
        format!("{kind} in {open}{}, {}]", self.min, self.max)
    }

    /// The key inside its options object (`gpu_memory` for `thresholds.gpu_memory`).
    pub fn key(&self) -> &'static str {
        self.name.rsplit('.').next().unwrap_or(self.name)
    }

    pub fn check(&self, value: f64) -> Result<f64, RangeViolation> {
        let above_min = if self.min_inclusive { value >= self.min } else { value > self.min };
        let integral = !self.integer || value.fract() == 0.0;
        if value.is_finite() && above_min && value <= self.max && integral {
            Ok(value)
        } else {
            Err(RangeViolation { parameter: self.name.to_owned(), expected: self.describe_range(), got: value })
        }
    }
}

/// A value outside its allowed range; shown to users as a `RangeError`.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeViolation {
    pub parameter: String,
    pub expected: String,
    pub got: f64,
}

impl fmt::Display for RangeViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must be {}, got {}", self.parameter, self.expected, js_number(self.got))
    }
}

/// A number as JavaScript prints it, so that messages quote what the user wrote.
pub fn js_number(value: f64) -> String {
    match value {
        v if v.is_nan() => "NaN".to_owned(),
        f64::INFINITY => "Infinity".to_owned(),
        f64::NEG_INFINITY => "-Infinity".to_owned(),
        v => format!("{v}"),
    }
}

/// The longest interval a timer in Node can wait (2^31 − 1 ms, about 24.8 days).
pub const MAX_INTERVAL_MS: f64 = 2_147_483_647.0;

pub const GPU_MEMORY: ThresholdSpec = ThresholdSpec {
    name: "thresholds.gpu_memory",
    default: 0.85,
    min: 0.0,
    min_inclusive: false,
    max: 1.0,
    integer: false,
};
pub const SYSTEM_MEMORY: ThresholdSpec = ThresholdSpec {
    name: "thresholds.system_memory",
    default: 0.80,
    min: 0.0,
    min_inclusive: false,
    max: 1.0,
    integer: false,
};
pub const WARNING_INTERVAL: ThresholdSpec = ThresholdSpec {
    name: "thresholds.warning_interval",
    default: 60_000.0,
    min: 0.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};

/// The thresholds of `MemoryMonitor`, in the requirements' order.
pub const MEMORY_THRESHOLDS: [ThresholdSpec; 3] = [GPU_MEMORY, SYSTEM_MEMORY, WARNING_INTERVAL];

/// Validated memory thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryThresholds {
    /// Fraction of one device's memory above which that device is under pressure.
    pub gpu_memory: f64,
    /// Fraction of `system_total` above which the system is under pressure.
    pub system_memory: f64,
    /// Least milliseconds between two warnings for the same condition.
    pub warning_interval_ms: f64,
}

impl Default for MemoryThresholds {
    fn default() -> Self {
        MemoryThresholds {
            gpu_memory: GPU_MEMORY.default,
            system_memory: SYSTEM_MEMORY.default,
            warning_interval_ms: WARNING_INTERVAL.default,
        }
    }
}

impl MemoryThresholds {
    /// Builds thresholds from the given values, defaults for the rest.
    pub fn from_values(
        gpu_memory: Option<f64>,
        system_memory: Option<f64>,
        warning_interval: Option<f64>,
    ) -> Result<Self, RangeViolation> {
        let defaults = Self::default();
        Ok(MemoryThresholds {
            gpu_memory: gpu_memory.map(|v| GPU_MEMORY.check(v)).transpose()?.unwrap_or(defaults.gpu_memory),
            system_memory: system_memory.map(|v| SYSTEM_MEMORY.check(v)).transpose()?.unwrap_or(defaults.system_memory),
            warning_interval_ms: warning_interval
                .map(|v| WARNING_INTERVAL.check(v))
                .transpose()?
                .unwrap_or(defaults.warning_interval_ms),
        })
    }
}

pub const TEMPERATURE: ThresholdSpec = ThresholdSpec {
    name: "thresholds.temperature",
    default: 80.0,
    min: 0.0,
    min_inclusive: false,
    max: 150.0,
    integer: false,
};
pub const MEMORY_FRAGMENTATION: ThresholdSpec = ThresholdSpec {
    name: "thresholds.memory_fragmentation",
    default: 0.3,
    min: 0.0,
    min_inclusive: false,
    max: 1.0,
    integer: false,
};
/// The thresholds of `GPUHealthMonitor`, in the requirements' order.
pub const GPU_THRESHOLDS: [ThresholdSpec; 2] = [TEMPERATURE, MEMORY_FRAGMENTATION];

/// How many GPUs the machine should have; fewer is `GPU_MISSING`.
pub const EXPECTED_GPUS: ThresholdSpec =
    ThresholdSpec { name: "expectedGpus", default: 0.0, min: 0.0, min_inclusive: true, max: 4096.0, integer: true };
/// How long an Xid event counts in the verdict, so health comes back once the cause is gone.
pub const XID_WINDOW_MS: ThresholdSpec = ThresholdSpec {
    name: "xidWindowMs",
    default: 3_600_000.0,
    min: 0.0,
    min_inclusive: false,
    max: MAX_INTERVAL_MS,
    integer: true,
};
/// How long an allocator report from the worker counts.
pub const ALLOCATOR_REPORT_MAX_AGE_MS: ThresholdSpec = ThresholdSpec {
    name: "allocatorReportMaxAgeMs",
    default: 300_000.0,
    min: 0.0,
    min_inclusive: false,
    max: MAX_INTERVAL_MS,
    integer: true,
};

/// Most allocator reports kept at once, one per (device, pid): a peer that reports for ever
/// new pids cannot grow the table past it. Expired reports go first, then the oldest.
pub const MAX_ALLOCATOR_REPORTS: usize = 1024;

/// The largest integer a JavaScript number holds exactly.
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Fields of `reportAllocatorStats(stats)`.
pub const REPORT_DEVICE: ThresholdSpec =
    ThresholdSpec { name: "stats.device", default: 0.0, min: 0.0, min_inclusive: true, max: 4095.0, integer: true };
pub const REPORT_ALLOCATED: ThresholdSpec = ThresholdSpec {
    name: "stats.allocated",
    default: 0.0,
    min: 0.0,
    min_inclusive: true,
    max: MAX_SAFE_INTEGER,
    integer: true,
};
pub const REPORT_RESERVED: ThresholdSpec = ThresholdSpec {
    name: "stats.reserved",
    default: 0.0,
    min: 0.0,
    min_inclusive: true,
    max: MAX_SAFE_INTEGER,
    integer: true,
};
pub const REPORT_PID: ThresholdSpec =
    ThresholdSpec { name: "stats.pid", default: 0.0, min: 0.0, min_inclusive: false, max: 4_194_304.0, integer: true };

/// Longest a recovery step may take before it is abandoned (`ERR_STEP_TIMEOUT`).
pub const STEP_TIMEOUT_MS: ThresholdSpec = ThresholdSpec {
    name: "stepTimeoutMs",
    default: 30_000.0,
    min: 1.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};
/// Longest `reinitializeGpu` waits for every known device to answer again.
pub const DEVICE_WAIT_MS: ThresholdSpec = ThresholdSpec {
    name: "deviceWaitMs",
    default: 30_000.0,
    min: 0.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};
/// A device's memory use must be below this after an out-of-memory recovery.
pub const RECOVERY_MEMORY_THRESHOLD: ThresholdSpec =
    ThresholdSpec { name: "memoryThreshold", default: 0.85, min: 0.0, min_inclusive: false, max: 1.0, integer: false };

/// Longest `handleJsonRpc`'s `authorize` callback may take before the call is refused: long
/// enough for a token check against a remote service, short enough that a hung callback
/// frees the request well within a client's patience.
pub const AUTHORIZE_TIMEOUT_MS: ThresholdSpec = ThresholdSpec {
    name: "authorizeTimeoutMs",
    default: 10_000.0,
    min: 1.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};

/// How often the supervisor checks health (the requirements check every minute).
pub const INTERVAL_MS: ThresholdSpec = ThresholdSpec {
    name: "intervalMs",
    default: 60_000.0,
    min: 1.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};
/// At most this many automatic recoveries per `recoveryBudget.windowMs`.
pub const BUDGET_MAX: ThresholdSpec = ThresholdSpec {
    name: "recoveryBudget.max",
    default: 3.0,
    min: 0.0,
    min_inclusive: true,
    max: 1000.0,
    integer: true,
};
pub const BUDGET_WINDOW_MS: ThresholdSpec = ThresholdSpec {
    name: "recoveryBudget.windowMs",
    default: 600_000.0,
    min: 1.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};
/// Periodic checkpoints; no default (off).
pub const CHECKPOINT_INTERVAL_MS: ThresholdSpec = ThresholdSpec {
    name: "checkpointIntervalMs",
    default: 0.0,
    min: 1.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};
/// Consecutive unhealthy checks before an episode starts, and healthy ones before it ends:
/// one noisy sample neither starts nor ends an episode.
pub const UNHEALTHY_AFTER: ThresholdSpec = ThresholdSpec {
    name: "hysteresis.unhealthyAfter",
    default: 2.0,
    min: 1.0,
    min_inclusive: true,
    max: 100.0,
    integer: true,
};
pub const HEALTHY_AFTER: ThresholdSpec = ThresholdSpec {
    name: "hysteresis.healthyAfter",
    default: 2.0,
    min: 1.0,
    min_inclusive: true,
    max: 100.0,
    integer: true,
};
/// Longest one health check may take before the state is `unknown` and the service not
/// ready. A full check answers in milliseconds; 10 s is far beyond a slow driver, yet a hung
/// NVML call turns readiness false well inside a Kubernetes probe's 30 s (3 × 10 s) window.
pub const CHECK_TIMEOUT_MS: ThresholdSpec = ThresholdSpec {
    name: "checkTimeoutMs",
    default: 10_000.0,
    min: 1.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};
/// Readiness fails when the last successful check is older than this; it must exceed
/// `intervalMs` (checks are that far apart). The default is `stale_after_default_ms`.
pub const STALE_AFTER_MS: ThresholdSpec = ThresholdSpec {
    name: "staleAfterMs",
    default: 0.0,
    min: 1.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};

/// How often the supervisor takes a fast sample (memory only) between its full checks; at
/// most `intervalMs`. 50 ms is as fast as a sample is worth: PSI's own window is 500 ms at
/// least, and an NVML memory query costs about a millisecond per device.
pub const FAST_SAMPLE_MS: ThresholdSpec = ThresholdSpec {
    name: "fastSampleMs",
    default: 1000.0,
    min: 50.0,
    min_inclusive: true,
    max: MAX_INTERVAL_MS,
    integer: true,
};
/// The metrics history's fine step (`historyStepMs`): one record per source and step; the
/// coarse tier's step is 30 of these. The disk bound is the same at any step; the time it
/// covers scales with it (24 h and 7 days at the default).
pub const HISTORY_STEP_MS: ThresholdSpec = ThresholdSpec {
    name: "historyStepMs",
    default: 10_000.0,
    // Finer would write far more often than the history is for.
    min: 100.0,
    min_inclusive: true,
    max: 3_600_000.0,
    integer: true,
};

/// `readHistory`'s `since`: ms since the Unix epoch.
pub const HISTORY_SINCE_MS: ThresholdSpec = ThresholdSpec {
    name: "options.since",
    default: 0.0,
    min: 0.0,
    min_inclusive: true,
    max: MAX_SAFE_INTEGER,
    integer: false,
};

/// `renderReport`'s `width`: columns of a terminal report's sparklines.
pub const REPORT_WIDTH: ThresholdSpec =
    ThresholdSpec { name: "options.width", default: 48.0, min: 8.0, min_inclusive: true, max: 400.0, integer: true };

/// How far ahead a projected memory exhaustion raises `MEMORY_EXHAUSTION_FORECAST`. At least
/// 10 s (the trend needs 10 s of samples and 4 s of confirmation), at most a day.
pub const FORECAST_HORIZON_MS: ThresholdSpec = ThresholdSpec {
    name: "forecastHorizonMs",
    default: 60_000.0,
    min: 10_000.0,
    min_inclusive: true,
    max: 86_400_000.0,
    integer: true,
};

/// Two missed checks, the last allowed its whole timeout: `2 × intervalMs + checkTimeoutMs`
/// (130 s at the defaults). One late check is not an outage; a hung check is caught sooner,
/// by its timeout.
pub fn stale_after_default_ms(interval_ms: f64, check_timeout_ms: f64) -> f64 {
    (2.0 * interval_ms + check_timeout_ms).min(MAX_INTERVAL_MS)
}

/// Least time between the starts of two checks woken by events (an Xid storm must not
/// turn the loop into a busy loop); a timer-driven check is never delayed by it.
pub const WAKE_MIN_GAP_MS: u64 = 100;

/// Consecutive monitoring failures after which the state is `unknown`.
pub const FAILURES_FOR_UNKNOWN: u32 = 3;
/// Backoff between failed recovery attempts: doubling from the first to the longest, each
/// with up to half of it taken off at random (jitter), so a fleet does not retry in step.
pub const BACKOFF_FIRST_MS: f64 = 1_000.0;
pub const BACKOFF_MAX_MS: f64 = 300_000.0;

/// Validated GPU health options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuHealthPolicy {
    /// °C at or above which a device fails.
    pub temperature: f64,
    /// Allocator fragmentation at or above which a device fails.
    pub memory_fragmentation: f64,
    pub expected_gpus: Option<u32>,
    pub xid_window_ms: f64,
    pub allocator_report_max_age_ms: f64,
}

impl Default for GpuHealthPolicy {
    fn default() -> Self {
        GpuHealthPolicy {
            temperature: TEMPERATURE.default,
            memory_fragmentation: MEMORY_FRAGMENTATION.default,
            expected_gpus: None,
            xid_window_ms: XID_WINDOW_MS.default,
            allocator_report_max_age_ms: ALLOCATOR_REPORT_MAX_AGE_MS.default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_requirements() {
        let t = MemoryThresholds::default();
        assert_eq!((t.gpu_memory, t.system_memory, t.warning_interval_ms), (0.85, 0.80, 60_000.0));
    }

    #[test]
    fn ranges_are_enforced_with_clear_messages() {
        let err = MemoryThresholds::from_values(Some(1.5), None, None).unwrap_err();
        assert_eq!(err.to_string(), "thresholds.gpu_memory must be a number in (0, 1], got 1.5");
        assert!(MemoryThresholds::from_values(Some(0.0), None, None).is_err());
        assert!(MemoryThresholds::from_values(Some(1.0), None, None).is_ok());
        assert!(MemoryThresholds::from_values(None, Some(-0.1), None).is_err());
        assert!(MemoryThresholds::from_values(None, Some(f64::NAN), None).is_err());
        assert!(MemoryThresholds::from_values(None, None, Some(0.0)).is_ok());
        assert!(MemoryThresholds::from_values(None, None, Some(1.5)).is_err());
        let err = MemoryThresholds::from_values(None, None, Some(f64::INFINITY)).unwrap_err();
        assert!(err.to_string().ends_with("got Infinity"), "{err}");
        let err = MemoryThresholds::from_values(None, None, Some(-1.0)).unwrap_err();
        assert_eq!(err.to_string(), "thresholds.warning_interval must be an integer in [0, 2147483647], got -1");
    }
}
