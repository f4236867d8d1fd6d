//! MCP server methods (https://modelcontextprotocol.io/specification/2025-11-25) on top of the
//! JSON-RPC dispatcher: `initialize`, `notifications/initialized`, `ping`, `tools/list` and
//! `tools/call`. Per MCP 2025-11-25, a tool that fails while running, is refused, or is given
//! arguments its input schema does not allow answers with a result carrying `isError: true`
//! (so a model can read the message and correct itself); only an unknown tool or a malformed
//! `tools/call` (no name, arguments not an object) is a JSON-RPC error (-32602).

use super::call::{call_tool, CallError};
use super::error::MethodError;
use super::tools::{tool_list, Tool};
use super::{RpcBackend, RpcLimits, ServerInfo};
use serde_json::{json, Map, Value};

pub const INITIALIZE: &str = "initialize";
pub const INITIALIZED: &str = "notifications/initialized";
pub const PING: &str = "ping";
pub const TOOLS_LIST: &str = "tools/list";
pub const TOOLS_CALL: &str = "tools/call";

/// The revision this server implements, answered to a client asking for one we do not support.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Revisions whose tool results ours are compatible with (older clients ignore
/// `structuredContent`, `outputSchema` and `annotations`); a client asking for one of these
/// gets it back.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] = [PROTOCOL_VERSION, "2025-06-18", "2025-03-26", "2024-11-05"];

/// `initialize`: version negotiation, capabilities and server info. Needs `protocolVersion`
/// (a string); the client's `capabilities` and `clientInfo` are not used, so not checked.
pub(crate) fn initialize(params: Option<&Value>, server: &ServerInfo) -> Result<Value, MethodError> {
    let requested = match params {
        Some(Value::Object(params)) => params.get("protocolVersion").and_then(Value::as_str),
        _ => None,
    };
    let requested =
        requested.ok_or_else(|| MethodError::invalid_params("initialize needs a protocolVersion string"))?;
    let version =
        SUPPORTED_PROTOCOL_VERSIONS.into_iter().find(|&supported| supported == requested).unwrap_or(PROTOCOL_VERSION);
    Ok(json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": server.name, "version": server.version }
    }))
}

/// `tools/list`: every tool on one page (no `nextCursor`; a `cursor` param is ignored).
pub(crate) fn tools_list() -> Value {
    json!({ "tools": tool_list() })
}

/// `tools/call` with `{ name, arguments? }`; `arguments` absent or null means `{}`.
pub(crate) async fn tools_call(
    params: Option<&Value>,
    backend: &dyn RpcBackend,
    limits: &RpcLimits,
) -> Result<Value, MethodError> {
    let Some(Value::Object(params)) = params else {
        return Err(MethodError::invalid_params("tools/call needs params { name, arguments }"));
    };
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| MethodError::invalid_params("tools/call needs a tool name string"))?;
    let tool = Tool::from_name(name).ok_or_else(|| MethodError::unknown_tool(name))?;
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => None,
        Some(arguments @ Value::Object(_)) => Some(arguments),
        Some(_) => return Err(MethodError::invalid_params("tool arguments must be an object")),
    };
    match call_tool(tool, arguments, backend, limits).await {
        Ok(result) => Ok(tool_result(result)),
        Err(CallError::InvalidParams(error) | CallError::Failed(error)) => Ok(tool_error_result(tool, &error)),
    }
}

/// A successful `CallToolResult`: the result as JSON text, and as `structuredContent` (which
/// must be an object, so anything else is wrapped as `{ "result": ... }`).
pub fn tool_result(result: Value) -> Value {
    let result = whole_numbers_as_integers(result);
    let text = result.to_string();
    let structured = match result {
        Value::Object(object) => object,
        other => Map::from_iter([("result".to_string(), other)]),
    };
    json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": structured,
        "isError": false
    })
}

/// JavaScript has one number type, so byte counts and timestamps reach here as floats, which
/// serde_json writes as `85899345920.0`. Each float that holds a whole number JavaScript can
/// represent exactly is made an integer, so the text reads as `JSON.stringify` would write it.
fn whole_numbers_as_integers(value: Value) -> Value {
    const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() && float.fract() == 0.0 && float.abs() <= MAX_SAFE_INTEGER => {
                Value::from(float as i64)
            }
            _ => Value::Number(number),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers_as_integers).collect()),
        Value::Object(fields) => {
            Value::Object(fields.into_iter().map(|(key, field)| (key, whole_numbers_as_integers(field))).collect())
        }
        other => other,
    }
}

/// A failed `CallToolResult`: the error's message as text, and the whole JSON-RPC-style error
/// object as `structuredContent.error` for agents that read structure, except for a tool with
/// an `outputSchema`: its `structuredContent` must match that schema, and clients check it
/// (the TypeScript SDK's `callTool` throws otherwise), so there the text alone says it.
pub fn tool_error_result(tool: Tool, error: &MethodError) -> Value {
    let mut result = json!({
        "content": [{ "type": "text", "text": error.message }],
        "isError": true
    });
    if tool.output_schema().is_none() {
        result["structuredContent"] = json!({ "error": error.to_json() });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::tool_result;
    use serde_json::json;

    #[test]
    fn tool_text_writes_whole_numbers_as_integers() {
        let result = json!({
            "memory_total": 85899345920.0_f64,
            "temperature": 61.5,
            "count": 3,
            "negative": -2.0_f64,
            "devices": [{ "index": 0.0_f64, "ratio": 0.25 }],
            "beyond_safe_integers": 1e300,
        });
        let answer = tool_result(result);
        let text = answer["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(r#""memory_total":85899345920"#), "{text}");
        assert!(text.contains(r#""negative":-2"#), "{text}");
        assert!(text.contains(r#""index":0"#), "{text}");
        assert!(text.contains(r#""temperature":61.5"#), "{text}");
        assert!(text.contains(r#""ratio":0.25"#), "{text}");
        assert!(text.contains(r#""beyond_safe_integers":1e+300"#), "{text}");
        assert!(!text.contains(".0,") && !text.contains(".0}"), "{text}");
        // The structured copy holds the same numbers.
        assert_eq!(answer["structuredContent"]["memory_total"], json!(85899345920_u64));
    }
}
