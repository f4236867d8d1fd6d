//! The tools as data: their names, descriptions and input schemas.
//!
//! `monitoring_tools()` is the requirements' `monitoringTools` object verbatim (exported to users
//! as is); `reportAllocatorStats` is kept apart from it (`allocator_tool()`) so that object stays
//! exactly as specified, and joins the other two only in MCP `tools/list`.

use serde_json::{json, Value};

pub const GET_SYSTEM_HEALTH: &str = "getSystemHealth";
pub const RECOVER_SYSTEM: &str = "recoverSystem";
pub const REPORT_ALLOCATOR_STATS: &str = "reportAllocatorStats";

/// The tools that change what the service does, and so run only once `RpcBackend::authorize`
/// says yes: `recoverSystem` acts on the machine, and `reportAllocatorStats` feeds the health
/// verdict (a forged report starts recoveries and pauses intake). `getSystemHealth` only reads.
pub const CONTROL_TOOLS: [Tool; 2] = [Tool::RecoverSystem, Tool::ReportAllocatorStats];

/// A tool callable both as a JSON-RPC method of the same name and through MCP `tools/call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    GetSystemHealth,
    RecoverSystem,
    ReportAllocatorStats,
}

impl Tool {
    /// In `tools/list` order: the two requirement tools, then the allocator one.
    pub const ALL: [Tool; 3] = [Tool::GetSystemHealth, Tool::RecoverSystem, Tool::ReportAllocatorStats];

    pub fn name(self) -> &'static str {
        match self {
            Tool::GetSystemHealth => GET_SYSTEM_HEALTH,
            Tool::RecoverSystem => RECOVER_SYSTEM,
            Tool::ReportAllocatorStats => REPORT_ALLOCATOR_STATS,
        }
    }

    pub fn from_name(name: &str) -> Option<Tool> {
        Self::ALL.into_iter().find(|tool| tool.name() == name)
    }

    /// Whether the tool is a control input (see `CONTROL_TOOLS`).
    pub fn is_control(self) -> bool {
        CONTROL_TOOLS.contains(&self)
    }

    /// `{ description, inputSchema }`.
    pub fn definition(self) -> Value {
        match self {
            Tool::ReportAllocatorStats => allocator_tool(),
            tool => monitoring_tools()[tool.name()].clone(),
        }
    }

    /// MCP `ToolAnnotations`: hints for a host deciding whether to ask its user before a call.
    /// `getSystemHealth` only reads; `recoverSystem` may clear caches, restart the worker or
    /// reset a GPU; `reportAllocatorStats` records numbers (a report replaces the last one).
    pub fn annotations(self) -> Value {
        match self {
            Tool::GetSystemHealth => json!({ "readOnlyHint": true, "openWorldHint": false }),
            Tool::RecoverSystem => json!({
                "readOnlyHint": false,
                "destructiveHint": true,
                "idempotentHint": false,
                "openWorldHint": false
            }),
            Tool::ReportAllocatorStats => json!({
                "readOnlyHint": false,
                "destructiveHint": false,
                "idempotentHint": true,
                "openWorldHint": false
            }),
        }
    }

    /// MCP `outputSchema`: the shape of `structuredContent` in the tool's successful results,
    /// for the tools whose result has one fixed shape.
    pub fn output_schema(self) -> Option<Value> {
        match self {
            Tool::GetSystemHealth => Some(system_health_schema()),
            Tool::RecoverSystem | Tool::ReportAllocatorStats => None,
        }
    }
}

/// `getSystemHealth`'s report (`HealthSupervisor.checkSystemHealth`'s, see API.md): every
/// top-level field and the issues in full; `memory` and `gpu` are the monitors' reports, or
/// null without that monitor. Extra fields are allowed so that adding one breaks no client.
fn system_health_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "healthy": { "type": "boolean" },
            "check_type": { "type": "string", "enum": ["quick", "full"] },
            "timestamp": { "type": "number", "description": "milliseconds since the epoch" },
            "duration_ms": { "type": "number", "minimum": 0 },
            "memory": { "type": ["object", "null"] },
            "gpu": { "type": ["object", "null"] },
            "issues": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "code": { "type": "string" },
                        "severity": { "type": "string", "enum": ["warn", "fail"] },
                        "device": { "type": ["integer", "null"], "minimum": 0 },
                        "message": { "type": "string" },
                        "action": {
                            "type": "string",
                            "enum": ["none", "clear_cache", "restart_app", "reset_gpu", "reboot_node"]
                        }
                    },
                    "required": ["code", "severity", "device", "message", "action"]
                }
            },
            "accepting_requests": { "type": "boolean" }
        },
        "required": ["healthy", "check_type", "timestamp", "duration_ms", "memory", "gpu", "issues", "accepting_requests"]
    })
}

/// The requirements' `monitoringTools`, verbatim.
pub fn monitoring_tools() -> Value {
    json!({
        "getSystemHealth": {
            "description": "Get comprehensive system health status",
            "inputSchema": {
                "type": "object",
                "properties": { "checkType": { "type": "string", "enum": ["quick", "full"] } }
            }
        },
        "recoverSystem": {
            "description": "Trigger system recovery",
            "inputSchema": {
                "type": "object",
                "properties": { "errorType": { "type": "string", "enum": ["memory", "gpu", "process"] } },
                "required": ["errorType"]
            }
        }
    })
}

/// `reportAllocatorStats`' `{ description, inputSchema }`. The bounds are those the dispatcher
/// enforces (device a u32 index, pid a Linux pid_t).
pub fn allocator_tool() -> Value {
    json!({
        "description": "Report a CUDA device's caching-allocator memory (bytes allocated to tensors and reserved from the driver) from a worker process",
        "inputSchema": {
            "type": "object",
            "properties": {
                "device": { "type": "integer", "minimum": 0, "maximum": u32::MAX },
                "allocated": { "type": "integer", "minimum": 0 },
                "reserved": { "type": "integer", "minimum": 0 },
                "pid": { "type": "integer", "minimum": 1, "maximum": i32::MAX }
            },
            "required": ["device", "allocated", "reserved"],
            "additionalProperties": false
        }
    })
}

/// MCP `tools/list`'s `tools`: `[{ name, description, inputSchema, annotations, outputSchema? }]`
/// for every tool, in order.
pub fn tool_list() -> Value {
    let tools = Tool::ALL
        .into_iter()
        .map(|tool| {
            let mut entry = tool.definition();
            entry["name"] = Value::from(tool.name());
            entry["annotations"] = tool.annotations();
            if let Some(schema) = tool.output_schema() {
                entry["outputSchema"] = schema;
            }
            entry
        })
        .collect();
    Value::Array(tools)
}
