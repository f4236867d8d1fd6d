//! JSON-RPC 2.0 framing (https://www.jsonrpc.org/specification) and method routing.
//!
//! Flow: size limit → parse → single request or batch → validate the Request object → route by
//! method → response, or nothing for a notification. Every failure becomes an error response;
//! nothing here panics on input, and a panicking backend becomes -32603.

use super::error::MethodError;
use super::tools::Tool;
use super::{mcp, params, AllocatorStatsParams, CheckType, RecoveryType, RpcBackend, RpcFuture, RpcLimits};
use futures::future::join_all;
use futures::FutureExt;
use serde_json::{json, Value};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Handles one message of JSON text: a request, a notification or a batch.
///
/// Returns the response to send back, or `None` when nothing is to be sent (a notification, or
/// a batch of only notifications).
pub async fn handle_json_rpc(message: &str, backend: &dyn RpcBackend, limits: &RpcLimits) -> Option<Value> {
    // Checked before parsing: the limit is what bounds the parser's time and memory.
    if message.len() > limits.max_message_bytes {
        let detail = format!("message is {} bytes, over the {}-byte limit", message.len(), limits.max_message_bytes);
        return Some(failure(Value::Null, MethodError::invalid_request(detail)));
    }
    match serde_json::from_str::<Value>(message) {
        Ok(value) => handle_parsed(value, backend, limits).await,
        Err(error) => Some(failure(Value::Null, MethodError::parse_error(error))),
    }
}

/// Like `handle_json_rpc`, for a message the transport has already parsed. The size limit
/// applies to the value's compact JSON text.
pub async fn handle_json_rpc_value(message: Value, backend: &dyn RpcBackend, limits: &RpcLimits) -> Option<Value> {
    if compact_len_exceeds(&message, limits.max_message_bytes) {
        let detail = format!("message is over the {}-byte limit", limits.max_message_bytes);
        return Some(failure(Value::Null, MethodError::invalid_request(detail)));
    }
    handle_parsed(message, backend, limits).await
}

async fn handle_parsed(message: Value, backend: &dyn RpcBackend, limits: &RpcLimits) -> Option<Value> {
    let Value::Array(batch) = message else {
        return handle_single(message, backend, limits).await;
    };
    if batch.is_empty() {
        return Some(failure(Value::Null, MethodError::invalid_request("empty batch")));
    }
    if batch.len() > limits.max_batch {
        let detail = format!("batch of {} requests, over the {}-request limit", batch.len(), limits.max_batch);
        return Some(failure(Value::Null, MethodError::invalid_request(detail)));
    }
    // The spec lets a batch run concurrently; join_all keeps the responses in request order.
    let responses: Vec<Value> = join_all(batch.into_iter().map(|request| handle_single(request, backend, limits)))
        .await
        .into_iter()
        .flatten()
        .collect();
    // A batch of only notifications gets no response at all, not an empty array.
    (!responses.is_empty()).then_some(Value::Array(responses))
}

/// A Request object that passed validation.
struct Request {
    /// `None`: a notification (no `id` member).
    id: Option<Value>,
    method: String,
    params: Option<Value>,
}

/// Validates the Request object. On failure: the id to answer with (the request's own when it
/// has a valid one, else null) and the -32600 error. Unknown extra members are ignored.
fn validate(message: Value) -> Result<Request, (Value, MethodError)> {
    let Value::Object(mut object) = message else {
        return Err((Value::Null, MethodError::invalid_request("not a Request object")));
    };
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => {
            return Err((Value::Null, MethodError::invalid_request("id must be a string, a number or null")));
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((reply_id, MethodError::invalid_request("jsonrpc must be exactly \"2.0\"")));
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        _ => return Err((reply_id, MethodError::invalid_request("method must be a string"))),
    };
    let params = match object.remove("params") {
        None => None,
        Some(params @ (Value::Array(_) | Value::Object(_))) => Some(params),
        Some(_) => return Err((reply_id, MethodError::invalid_request("params must be an array or an object"))),
    };
    Ok(Request { id, method, params })
}

async fn handle_single(message: Value, backend: &dyn RpcBackend, limits: &RpcLimits) -> Option<Value> {
    // An invalid Request is answered even without an id (spec section 7: `"method": 1`).
    let request = match validate(message) {
        Ok(request) => request,
        Err((id, error)) => return Some(failure(id, error)),
    };
    let outcome = route(&request.method, request.params.as_ref(), backend, limits).await;
    // A notification is never answered, not even with an error.
    let id = request.id?;
    Some(match outcome {
        Ok(result) => json!({ "jsonrpc": "2.0", "result": result, "id": id }),
        Err(error) => failure(id, error),
    })
}

async fn route(
    method: &str,
    params: Option<&Value>,
    backend: &dyn RpcBackend,
    limits: &RpcLimits,
) -> Result<Value, MethodError> {
    if let Some(tool) = Tool::from_name(method) {
        return call_tool(tool, params, backend, limits).await.map_err(CallError::into_error);
    }
    match method {
        mcp::INITIALIZE => mcp::initialize(params, &limits.server_info),
        // A notification by MCP; answered with `{}` should a client send it with an id.
        mcp::INITIALIZED | mcp::PING => Ok(json!({})),
        mcp::TOOLS_LIST => Ok(mcp::tools_list()),
        mcp::TOOLS_CALL => mcp::tools_call(params, backend, limits).await,
        _ => Err(MethodError::method_not_found()),
    }
}

/// Why a tool call failed. Both are a JSON-RPC error when the tool is called as a method, and
/// a result with `isError: true` through MCP `tools/call` (MCP 2025-11-25).
pub(crate) enum CallError {
    /// -32602: the params did not validate (here, or in the backend's own checks).
    InvalidParams(MethodError),
    /// The backend failed or panicked, or authorization was refused or timed out.
    Failed(MethodError),
}

impl CallError {
    fn into_error(self) -> MethodError {
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

fn failure(id: Value, error: MethodError) -> Value {
    json!({ "jsonrpc": "2.0", "error": error.to_json(), "id": id })
}

/// Whether `value` as compact JSON is longer than `limit` bytes, at a cost bounded by `limit`:
/// serialization stops at the first write past it.
fn compact_len_exceeds(value: &Value, limit: usize) -> bool {
    struct Budget(usize);
    impl io::Write for Budget {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0 = self.0.checked_sub(bytes.len()).ok_or(io::ErrorKind::FileTooLarge)?;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    // Serializing a Value fails only through the writer, i.e. on going over the budget.
    serde_json::to_writer(Budget(limit), value).is_err()
}
