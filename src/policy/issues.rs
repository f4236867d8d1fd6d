//! Health issues: every code, its severity and the action it calls for, in one place.

use std::fmt;

/// How bad an issue is. `Fail` makes a device (and the verdict) unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warn,
    Fail,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "warn" => Some(Severity::Warn),
            "fail" => Some(Severity::Fail),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Fail => "fail",
        }
    }
}

/// What recovers from an issue, from least to most disruptive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    None,
    ClearCache,
    RestartApp,
    ResetGpu,
    RebootNode,
}

impl Action {
    pub fn parse(text: &str) -> Option<Action> {
        [Action::None, Action::ClearCache, Action::RestartApp, Action::ResetGpu, Action::RebootNode]
            .into_iter()
            .find(|a| a.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::ClearCache => "clear_cache",
            Action::RestartApp => "restart_app",
            Action::ResetGpu => "reset_gpu",
            Action::RebootNode => "reboot_node",
        }
    }
}

/// Every issue the package reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueCode {
    /// At or above `thresholds.temperature`.
    TemperatureHigh,
    /// Clocks held down by a thermal limit (software or hardware slowdown).
    ThermalThrottle,
    /// Clocks held down by an external power brake.
    PowerBrake,
    /// The worker's caching allocator holds much more than it uses.
    FragmentationHigh,
    /// NVML says the device fell off the bus.
    GpuLost,
    /// Fewer devices than `expectedGpus`.
    GpuMissing,
    /// A critical Xid event from the driver, classified by the Xid catalog.
    Xid,
    /// Volatile uncorrectable ECC errors since the last driver load.
    EccUncorrected,
    /// Pages with errors wait for retirement, done at the next GPU reset.
    RetiredPagesPending,
    /// Rows wait for remapping, done at the next GPU reset.
    RowRemapPending,
    /// Row remapping failed: the memory cannot repair itself.
    RowRemapFailed,
    /// Host (or container) memory above `thresholds.system_memory`.
    SystemMemoryPressure,
    /// One device's memory above `thresholds.gpu_memory`.
    GpuMemoryPressure,
    /// The fast samples' trend projects a device's (or host/cgroup) memory full within
    /// `forecastHorizonMs` (`policy::forecast`); `eta_ms` says when.
    MemoryExhaustionForecast,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::TemperatureHigh => "TEMPERATURE_HIGH",
            IssueCode::ThermalThrottle => "THERMAL_THROTTLE",
            IssueCode::PowerBrake => "POWER_BRAKE",
            IssueCode::FragmentationHigh => "FRAGMENTATION_HIGH",
            IssueCode::GpuLost => "GPU_LOST",
            IssueCode::GpuMissing => "GPU_MISSING",
            IssueCode::Xid => "XID",
            IssueCode::EccUncorrected => "ECC_UNCORRECTED",
            IssueCode::RetiredPagesPending => "RETIRED_PAGES_PENDING",
            IssueCode::RowRemapPending => "ROW_REMAP_PENDING",
            IssueCode::RowRemapFailed => "ROW_REMAP_FAILED",
            IssueCode::SystemMemoryPressure => "SYSTEM_MEMORY_PRESSURE",
            IssueCode::GpuMemoryPressure => "GPU_MEMORY_PRESSURE",
            IssueCode::MemoryExhaustionForecast => "MEMORY_EXHAUSTION_FORECAST",
        }
    }

    /// Severity and action of every code but `Xid`, whose come from the Xid catalog.
    pub fn policy(self) -> (Severity, Action) {
        match self {
            IssueCode::TemperatureHigh => (Severity::Fail, Action::None),
            IssueCode::ThermalThrottle => (Severity::Warn, Action::None),
            IssueCode::PowerBrake => (Severity::Warn, Action::None),
            IssueCode::FragmentationHigh => (Severity::Fail, Action::ClearCache),
            IssueCode::GpuLost => (Severity::Fail, Action::ResetGpu),
            IssueCode::GpuMissing => (Severity::Fail, Action::RebootNode),
            IssueCode::Xid => (Severity::Warn, Action::None),
            IssueCode::EccUncorrected => (Severity::Fail, Action::ResetGpu),
            IssueCode::RetiredPagesPending => (Severity::Warn, Action::ResetGpu),
            IssueCode::RowRemapPending => (Severity::Warn, Action::ResetGpu),
            IssueCode::RowRemapFailed => (Severity::Fail, Action::ResetGpu),
            IssueCode::SystemMemoryPressure => (Severity::Fail, Action::ClearCache),
            IssueCode::GpuMemoryPressure => (Severity::Fail, Action::ClearCache),
            // A warning: it may pause intake, it never starts a recovery by itself.
            IssueCode::MemoryExhaustionForecast => (Severity::Warn, Action::None),
        }
    }

    /// The code named `text`, as `as_str` writes it.
    pub fn parse(text: &str) -> Option<IssueCode> {
        IssueCode::ALL.into_iter().find(|c| c.as_str() == text)
    }

    pub const ALL: [IssueCode; 14] = [
        IssueCode::TemperatureHigh,
        IssueCode::ThermalThrottle,
        IssueCode::PowerBrake,
        IssueCode::FragmentationHigh,
        IssueCode::GpuLost,
        IssueCode::GpuMissing,
        IssueCode::Xid,
        IssueCode::EccUncorrected,
        IssueCode::RetiredPagesPending,
        IssueCode::RowRemapPending,
        IssueCode::RowRemapFailed,
        IssueCode::SystemMemoryPressure,
        IssueCode::GpuMemoryPressure,
        IssueCode::MemoryExhaustionForecast,
    ];
}

/// One thing wrong, said so a person understands it, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthIssue {
    pub code: IssueCode,
    pub severity: Severity,
    /// The device index, or `None` for the machine as a whole.
    pub device: Option<u32>,
    pub message: String,
    pub action: Action,
    /// Until the projected exhaustion, for `MemoryExhaustionForecast`; `None` otherwise.
    pub eta_ms: Option<u64>,
}

impl HealthIssue {
    /// An issue with its code's own severity and action.
    pub fn new(code: IssueCode, device: Option<u32>, message: String) -> Self {
        let (severity, action) = code.policy();
        HealthIssue { code, severity, device, message, action, eta_ms: None }
    }
}

impl fmt::Display for HealthIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code.as_str(), self.severity.as_str(), self.message)
    }
}

/// The verdict over a list of issues: `pass`, `warn` or `fail`, the worst present.
pub fn worst_status(issues: &[HealthIssue]) -> &'static str {
    match issues.iter().map(|i| i.severity).max() {
        None => "pass",
        Some(severity) => severity.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_upper_snake_case() {
        let mut names: Vec<_> = IssueCode::ALL.iter().map(|c| c.as_str()).collect();
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), IssueCode::ALL.len());
    }

    #[test]
    fn status_is_the_worst_issue() {
        assert_eq!(worst_status(&[]), "pass");
        let warn = HealthIssue::new(IssueCode::ThermalThrottle, Some(0), "hot".into());
        let fail = HealthIssue::new(IssueCode::GpuLost, Some(1), "gone".into());
        assert_eq!(worst_status(std::slice::from_ref(&warn)), "warn");
        assert_eq!(worst_status(&[warn, fail]), "fail");
    }
}
