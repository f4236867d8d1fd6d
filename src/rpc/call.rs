//! Calling one tool: its params validated, `authorize` asked for a control tool, the backend
//! run with its panics caught. Both ways in use it: a JSON-RPC method call (`dispatch`) and an
//! MCP `tools/call` (`mcp`).

use super::error::MethodError;
use super::tools::Tool;
use super::{params, AllocatorStatsParams, CheckType, RecoveryType, RpcBackend, RpcFuture, RpcLimits};
use futures::FutureExt;
use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Why a tool call failed. Both are a JSON-RPC error when the tool is called as a method, and
/// a result with `isError: true` through MCP `tools/call` (MCP 2025-11-25).
pub(crate) enum CallError {
    /// -32602: the params did not validate (here, or in the backend's own checks).
    InvalidParams(MethodError),
    /// The backend failed or panicked, or authorization was refused or timed out.
    Failed(MethodError),
}

impl CallError {
    pub(crate) fn into_error(self) -> MethodError {
        match self {
            CallError::InvalidParams(error) | CallError::Failed(error) => error,
        }
    }
}

/// Validates the params, then runs the tool on the backend (a control tool only once
/// `authorize` said yes within `limits.authorize_timeout`).
pub(crate) async fn call_tool(
    tool: Tool,
    params: Option<&Value>,
    backend: &dyn RpcBackend,
    limits: &RpcLimits,
) -> Result<Value, CallError> {
    let name = tool.name();
    // Params are checked first: authorize sees them by name, whichever way they came.
    let call = match tool {
        Tool::GetSystemHealth => Call::Health(params::check_type(name, params).map_err(CallError::InvalidParams)?),
        Tool::RecoverSystem => Call::Recover(params::recovery_type(name, params).map_err(CallError::InvalidParams)?),
        Tool::ReportAllocatorStats => {
            Call::Allocator(params::allocator_stats(name, params).map_err(CallError::InvalidParams)?)
        }
    };
    if tool.is_control() {
        authorized(name, &call.params_by_name(), backend, limits.authorize_timeout).await?;
    }
    match call {
        Call::Health(check_type) => guarded(|| backend.get_system_health(check_type)).await,
        Call::Recover(error_type) => guarded(|| backend.recover_system(error_type)).await,
        Call::Allocator(stats) => match catch_unwind(AssertUnwindSafe(|| backend.report_allocator_stats(stats))) {
            Ok(result) => result.map_err(backend_error),
            Err(_) => Err(CallError::Failed(panicked())),
        },
    }
}

/// A tool's validated params.
enum Call {
    Health(CheckType),
    Recover(RecoveryType),
    Allocator(AllocatorStatsParams),
}

impl Call {
    /// The params by name, as `authorize` sees them.
    fn params_by_name(&self) -> Value {
        match self {
            Call::Health(check_type) => json!({ "checkType": check_type.as_str() }),
            Call::Recover(error_type) => json!({ "errorType": error_type.as_str() }),
            Call::Allocator(stats) => {
                let mut params =
                    json!({ "device": stats.device, "allocated": stats.allocated, "reserved": stats.reserved });
                if let Some(pid) = stats.pid {
                    params["pid"] = json!(pid);
                }
                params
            }
        }
    }
}

/// Asks `authorize`; a refusal, a panic or no answer within `timeout` refuses the call.
async fn authorized(
    method: &str,
    params: &Value,
    backend: &dyn RpcBackend,
    timeout: Duration,
) -> Result<(), CallError> {
    let verdict = match catch_unwind(AssertUnwindSafe(|| backend.authorize(method, params))) {
        // The timer is Tokio's, which the binding always runs on; a caller that polls the
        // dispatcher on another executor (the fuzz target's block_on) has no timer, and its
        // backend answers at once.
        Ok(future) if tokio::runtime::Handle::try_current().is_ok() => {
            tokio::time::timeout(timeout, AssertUnwindSafe(future).catch_unwind()).await
        }
        Ok(future) => Ok(AssertUnwindSafe(future).catch_unwind().await),
        Err(panic) => Ok(Err(panic)),
    };
    match verdict {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(CallError::Failed(MethodError::not_authorized(method))),
        Ok(Err(_panic)) => Err(CallError::Failed(MethodError::internal("the authorize callback panicked"))),
        Err(_elapsed) => Err(CallError::Failed(MethodError::authorize_timed_out(method, timeout))),
    }
}

/// A backend's error as the caller sees it: invalid params stay a protocol error (-32602,
/// and so an MCP protocol error too), other codes are sanitized.
fn backend_error(error: MethodError) -> CallError {
    match error.sanitized() {
        error if error.code == super::error::INVALID_PARAMS => CallError::InvalidParams(error),
        error => CallError::Failed(error),
    }
}

/// Runs a backend call, turning a panic (while building or polling the future) into -32603.
async fn guarded(call: impl FnOnce() -> RpcFuture<Result<Value, MethodError>>) -> Result<Value, CallError> {
    let outcome = match catch_unwind(AssertUnwindSafe(call)) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await.unwrap_or_else(|_| Err(panicked())),
        Err(_) => Err(panicked()),
    };
    outcome.map_err(backend_error)
}

fn panicked() -> MethodError {
    MethodError::new(super::error::INTERNAL_ERROR, super::error::MSG_BACKEND_PANICKED)
}
