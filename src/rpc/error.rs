//! Every error code and fixed error message the dispatcher uses, in one place, and the one
//! error type (`MethodError`) that both the dispatcher and the backend fail with.
//!
//! Messages follow the JSON-RPC 2.0 spec's wording ("Invalid params", ...); where a detail
//! helps the caller it is appended after a colon, e.g. "Invalid params: errorType is required".

use serde_json::{json, Map, Value};
use std::fmt;

// ---- JSON-RPC 2.0 codes (https://www.jsonrpc.org/specification#error_object) ----

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid Request object (also: message or batch over the limits).
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters (also: MCP unknown tool or invalid tool arguments).
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error (also: the backend panicked or used a reserved code).
pub const INTERNAL_ERROR: i64 = -32603;
/// First (lowest) code of the spec's implementation-defined server error range.
pub const SERVER_ERROR_MIN: i64 = -32099;
/// Last (highest) code of the server error range.
pub const SERVER_ERROR_MAX: i64 = -32000;
/// Lowest code of the range the spec reserves for pre-defined errors (-32768..=-32000).
pub const RESERVED_MIN: i64 = -32768;
/// Highest code of the reserved range.
pub const RESERVED_MAX: i64 = -32000;

// ---- hpc-health server errors (inside SERVER_ERROR_MIN..=SERVER_ERROR_MAX) ----

/// A control method (`tools::CONTROL_TOOLS`) refused because `RpcBackend::authorize` said no,
/// or did not answer within `RpcLimits::authorize_timeout`.
pub const NOT_AUTHORIZED: i64 = -32001;

// ---- messages ----

pub const MSG_PARSE_ERROR: &str = "Parse error";
pub const MSG_INVALID_REQUEST: &str = "Invalid Request";
pub const MSG_METHOD_NOT_FOUND: &str = "Method not found";
pub const MSG_INVALID_PARAMS: &str = "Invalid params";
pub const MSG_INTERNAL_ERROR: &str = "Internal error";
/// Follows the method's name: "recoverSystem refused: not authorized".
pub const MSG_NOT_AUTHORIZED: &str = "refused: not authorized";
/// Follows the method's name when `authorize` did not settle in time.
pub const MSG_AUTHORIZE_TIMED_OUT: &str = "refused: authorize did not answer within";
/// Detail for a backend that panicked instead of returning an error.
pub const MSG_BACKEND_PANICKED: &str = "Internal error: the health backend panicked";
/// Detail for a backend error whose code the spec reserves for the protocol itself.
pub const MSG_RESERVED_CODE: &str = "backend used a reserved JSON-RPC error code";
/// MCP's wording for an unknown tool name (spec example: "Unknown tool: invalid_tool_name").
pub const MSG_UNKNOWN_TOOL: &str = "Unknown tool";
/// Longest piece of caller-supplied text (tool or field name) echoed back in a message.
pub const MAX_ECHOED_CHARS: usize = 64;

/// A failed call: what the JSON-RPC `error` member carries.
///
/// The backend returns it with `INTERNAL_ERROR`, `INVALID_PARAMS` or a code in `SERVER_ERROR_MIN..=SERVER_ERROR_MAX`
/// (application codes outside the reserved range pass through too); any other reserved code is
/// turned into `INTERNAL_ERROR` so a backend cannot pose as a protocol error such as Parse error.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl MethodError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        MethodError { code, message: message.into(), data: None }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// -32603 with a detail: "Internal error: <detail>".
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self::new(INTERNAL_ERROR, format!("{MSG_INTERNAL_ERROR}: {detail}"))
    }

    /// A server error (-32099..=-32000); a code outside that range becomes -32603.
    pub fn server(code: i64, message: impl Into<String>) -> Self {
        let code = if (SERVER_ERROR_MIN..=SERVER_ERROR_MAX).contains(&code) { code } else { INTERNAL_ERROR };
        Self::new(code, message)
    }

    /// -32001 "<method> refused: not authorized".
    pub fn not_authorized(method: &str) -> Self {
        Self::new(NOT_AUTHORIZED, format!("{method} {MSG_NOT_AUTHORIZED}"))
    }

    /// -32001 "<method> refused: authorize did not answer within <ms> ms".
    pub fn authorize_timed_out(method: &str, timeout: std::time::Duration) -> Self {
        Self::new(NOT_AUTHORIZED, format!("{method} {MSG_AUTHORIZE_TIMED_OUT} {} ms", timeout.as_millis()))
    }

    pub(crate) fn parse_error(detail: impl fmt::Display) -> Self {
        Self::new(PARSE_ERROR, format!("{MSG_PARSE_ERROR}: {detail}"))
    }

    pub(crate) fn invalid_request(detail: impl fmt::Display) -> Self {
        Self::new(INVALID_REQUEST, format!("{MSG_INVALID_REQUEST}: {detail}"))
    }

    pub(crate) fn method_not_found() -> Self {
        // The method name is not echoed: it is caller-controlled and may be a megabyte long.
        Self::new(METHOD_NOT_FOUND, MSG_METHOD_NOT_FOUND)
    }

    /// -32602 "Invalid params: <detail>"; also what a backend returns when it refuses the
    /// (schema-valid) params, e.g. an allocator report for a device it does not know.
    pub fn invalid_params(detail: impl fmt::Display) -> Self {
        Self::new(INVALID_PARAMS, format!("{MSG_INVALID_PARAMS}: {detail}"))
    }

    pub(crate) fn unknown_tool(name: &str) -> Self {
        Self::new(INVALID_PARAMS, format!("{MSG_UNKNOWN_TOOL}: {}", snippet(name)))
    }

    /// Keeps the backend's error unless its code is one the spec reserves for the protocol.
    /// Invalid params is a method's own error (the spec: "Invalid method parameter(s)"), so a
    /// backend may use it for params that pass the schema but not its checks.
    pub(crate) fn sanitized(self) -> Self {
        let reserved = (RESERVED_MIN..=RESERVED_MAX).contains(&self.code);
        let allowed = matches!(self.code, INTERNAL_ERROR | INVALID_PARAMS)
            || (SERVER_ERROR_MIN..=SERVER_ERROR_MAX).contains(&self.code);
        if reserved && !allowed {
            let mut error = Self::internal(MSG_RESERVED_CODE);
            error.data = Some(json!({ "code": self.code, "message": self.message, "data": self.data }));
            error
        } else {
            self
        }
    }

    /// The JSON-RPC error object: `{ code, message, data? }`.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("code".into(), Value::from(self.code));
        object.insert("message".into(), Value::from(self.message.clone()));
        if let Some(data) = &self.data {
            object.insert("data".into(), data.clone());
        }
        Value::Object(object)
    }
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for MethodError {}

/// Caller-supplied text cut to `MAX_ECHOED_CHARS` (on a char boundary) and quoted, so an error
/// message never grows with hostile input.
pub(crate) fn snippet(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHOED_CHARS) {
        None => format!("{text:?}"),
        Some((end, _)) => format!("{:?}…", &text[..end]),
    }
}
