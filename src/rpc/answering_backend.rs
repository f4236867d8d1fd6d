//! A backend that answers every method at once, so that any input can reach every path of
//! the dispatcher: for the hostile-input tests and the fuzz target (feature `fuzzing`), not
//! a part of the package.

use super::{AllocatorStatsParams, CheckType, MethodError, RecoveryType, RpcBackend, RpcFuture};
use serde_json::{json, Value};

/// Answers at once; `allow` is what `authorize` says.
pub struct AnsweringBackend {
    pub allow: bool,
}

impl RpcBackend for AnsweringBackend {
    fn get_system_health(&self, check_type: CheckType) -> RpcFuture<Result<Value, MethodError>> {
        Box::pin(async move { Ok(json!({ "status": "healthy", "checkType": check_type.as_str() })) })
    }

    fn recover_system(&self, error_type: RecoveryType) -> RpcFuture<Result<Value, MethodError>> {
        Box::pin(async move { Ok(json!({ "recovered": true, "errorType": error_type.as_str() })) })
    }

    fn report_allocator_stats(&self, stats: AllocatorStatsParams) -> Result<Value, MethodError> {
        Ok(json!({ "accepted": true, "device": stats.device }))
    }

    fn authorize(&self, _method: &str, _params: &Value) -> RpcFuture<bool> {
        let allow = self.allow;
        Box::pin(async move { allow })
    }
}
