//! NVIDIA's Xid catalog as data: for each critical Xid the driver reports, what it means,
//! NVIDIA's published immediate action (the catalog's "resolution bucket": RESTART_APP,
//! RESET_GPU, RESTART_BM, IGNORE) and how severe it is for the service. Errors that the
//! application caused itself (13, 31, 43, 45, 68) are not GPU failures: the process that
//! made them sees its own CUDA error. An Xid not listed is a warning, never ignored.

use super::issues::{Action, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XidEntry {
    pub code: u64,
    pub meaning: &'static str,
    pub action: Action,
    pub severity: Severity,
    /// An error of the application's own making, not of the GPU.
    pub application_error: bool,
}

const fn gpu(code: u64, meaning: &'static str, action: Action, severity: Severity) -> XidEntry {
    XidEntry { code, meaning, action, severity, application_error: false }
}

const fn app(code: u64, meaning: &'static str) -> XidEntry {
    XidEntry { code, meaning, action: Action::None, severity: Severity::Warn, application_error: true }
}

use Action::{None as NoAction, RebootNode, ResetGpu, RestartApp};
use Severity::{Fail, Warn};

pub const XID_CATALOG: &[XidEntry] = &[
    gpu(8, "GPU stopped processing (channel idle timeout)", RestartApp, Fail),
    app(13, "graphics engine exception (usually an out-of-bounds access in a kernel)"),
    app(31, "GPU memory page fault (an illegal address accessed by the application)"),
    app(43, "GPU stopped processing the application's channel after its own error"),
    app(45, "preemptive cleanup after earlier errors or a killed process"),
    gpu(48, "double-bit ECC error (uncorrectable memory error)", ResetGpu, Fail),
    gpu(61, "internal micro-controller breakpoint/warning", ResetGpu, Fail),
    gpu(62, "internal micro-controller halt", ResetGpu, Fail),
    gpu(63, "ECC page retirement or row remapping recorded (repaired at the next reset)", NoAction, Warn),
    gpu(64, "ECC page retirement or row remapping failed", ResetGpu, Fail),
    app(68, "video decoder (NVDEC) exception"),
    gpu(74, "NVLink error", ResetGpu, Fail),
    gpu(79, "GPU has fallen off the bus", RebootNode, Fail),
    gpu(92, "high single-bit ECC error rate", NoAction, Warn),
    gpu(94, "contained ECC error (the affected application must restart)", RestartApp, Fail),
    gpu(95, "uncontained ECC error", ResetGpu, Fail),
    gpu(109, "context switch timeout", RestartApp, Fail),
    gpu(119, "GSP RPC timeout", ResetGpu, Fail),
    gpu(120, "GSP error", ResetGpu, Fail),
    gpu(140, "unrecovered ECC error", ResetGpu, Fail),
];

/// What to make of an Xid: the catalog's entry, or a warning for one it does not know.
pub fn classify_xid(code: u64) -> XidEntry {
    XID_CATALOG.iter().find(|e| e.code == code).copied().unwrap_or(XidEntry {
        code,
        meaning: "not in this package's Xid catalog; look it up in NVIDIA's Xid catalog",
        action: NoAction,
        severity: Warn,
        application_error: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_resolutions() {
        assert_eq!(classify_xid(79).action, Action::RebootNode);
        for code in [48, 64, 74, 95, 119, 120, 140] {
            assert_eq!(classify_xid(code).action, Action::ResetGpu, "Xid {code}");
            assert_eq!(classify_xid(code).severity, Severity::Fail, "Xid {code}");
        }
        assert_eq!(classify_xid(94).action, Action::RestartApp);
        for code in [13, 31, 43, 45, 68] {
            let entry = classify_xid(code);
            assert!(
                entry.application_error && entry.severity == Severity::Warn && entry.action == Action::None,
                "Xid {code}"
            );
        }
        assert_eq!(classify_xid(63).action, Action::None);
    }

    #[test]
    fn unknown_xids_are_warnings() {
        let entry = classify_xid(999);
        assert_eq!((entry.code, entry.severity, entry.action), (999, Severity::Warn, Action::None));
        assert!(!entry.application_error);
    }

    #[test]
    fn each_code_once() {
        let mut codes: Vec<_> = XID_CATALOG.iter().map(|e| e.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), XID_CATALOG.len());
    }

    /// The shipped alert on failing Xids names exactly the catalog's failing Xids.
    #[test]
    fn the_shipped_xid_alert_names_every_failing_xid() {
        let rules = include_str!("../../deploy/prometheus/hpc-health.rules.yml");
        let start = rules.find("hpc_health_gpu_xid_errors_total{xid=~\"").expect("the Xid alert") + 38;
        let listed: Vec<u64> =
            rules[start..][..rules[start..].find('"').unwrap()].split('|').map(|code| code.parse().unwrap()).collect();
        let failing: Vec<u64> = XID_CATALOG.iter().filter(|e| e.severity == Severity::Fail).map(|e| e.code).collect();
        assert_eq!(listed, failing);
    }
}
