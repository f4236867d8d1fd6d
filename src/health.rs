//! What one health check of the whole system found: the supervisor makes it, the JSON
//! shapes (`shapes`), the RPC answer and the binding read it.

use crate::monitors::gpu_health::GpuHealthReport;
use crate::policy::issues::HealthIssue;
use crate::policy::pressure::MemoryPressure;
use crate::sampling::memory::MemoryMetrics;
use crate::vocabulary::CheckType;

/// One health check of the whole system.
#[derive(Debug, Clone)]
pub struct SystemHealth {
    pub healthy: bool,
    pub check_type: CheckType,
    pub timestamp_ms: f64,
    pub duration_ms: f64,
    pub memory: Option<(MemoryPressure, MemoryMetrics)>,
    pub gpu: Option<GpuHealthReport>,
    pub issues: Vec<HealthIssue>,
    pub accepting_requests: bool,
}
