//! JSON-RPC 2.0 and MCP (protocol revision 2025-11-25) dispatch for the health tools.
//!
//! Operators reach `getSystemHealth` / `recoverSystem` over the service's JSON-RPC channel and
//! AI agents reach the same tools over MCP (`initialize`, `tools/list`, `tools/call`, ...); both
//! go through one dispatcher, `handle_json_rpc`. This core is plain Rust and knows nothing of
//! JavaScript or of the transport: it takes one message and returns the response (or `None`
//! where JSON-RPC says nothing is sent back). The work itself is done by an `RpcBackend`, which
//! the supervisor implements and the binding wraps.
//!
//! The dispatcher is stateless: it does not track MCP sessions (a `tools/call` before
//! `initialize` is served), so one dispatcher serves both kinds of client on one channel.

mod call;
mod dispatch;
pub mod error;
pub mod mcp;
mod params;
pub mod tools;

#[cfg(test)]
mod tests;

use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::policy::thresholds::AUTHORIZE_TIMEOUT_MS;

pub use crate::vocabulary::{CheckType, RecoveryType};
pub use dispatch::{handle_json_rpc, handle_json_rpc_value};
pub use error::MethodError;
pub use tools::{allocator_tool, monitoring_tools, Tool, CONTROL_TOOLS};

/// A boxed, sendable future: what `RpcBackend` methods return (no async-trait in this crate).
/// It is `'static`, so a backend clones what it needs (an `Arc` of its state) into it.
pub type RpcFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the dispatcher calls to do the work. The supervisor implements it; the binding may wrap
/// it per connection so that `authorize` knows who is calling.
pub trait RpcBackend: Send + Sync {
    /// `getSystemHealth`: the health report as a JSON object.
    fn get_system_health(&self, check_type: CheckType) -> RpcFuture<Result<Value, MethodError>>;

    /// `recoverSystem`: runs only after `authorize` said yes (a control tool).
    fn recover_system(&self, error_type: RecoveryType) -> RpcFuture<Result<Value, MethodError>>;

    /// `reportAllocatorStats` from the CUDA worker: records the numbers, so it is synchronous.
    /// Runs only after `authorize` said yes (a control tool). A report the backend refuses
    /// (e.g. an unknown device) is `MethodError::invalid_params`.
    fn report_allocator_stats(&self, stats: AllocatorStatsParams) -> Result<Value, MethodError>;

    /// Whether this caller may run a control tool (`tools::CONTROL_TOOLS`; the JS `authorize`
    /// callback in the binding); default: refused. `method` is the tool name ("recoverSystem",
    /// "reportAllocatorStats", also when reached through MCP `tools/call`) and `params` its
    /// validated arguments by name, e.g. `{"errorType":"gpu"}`. A future that does not settle
    /// within `RpcLimits::authorize_timeout` refuses.
    fn authorize(&self, method: &str, params: &Value) -> RpcFuture<bool> {
        let _ = (method, params);
        Box::pin(async { false })
    }
}

/// `reportAllocatorStats`' params: one device's caching-allocator numbers from the CUDA worker
/// (e.g. `torch.cuda.memory_allocated` / `memory_reserved`), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllocatorStatsParams {
    /// CUDA device index.
    pub device: u32,
    /// Bytes held by live tensors.
    pub allocated: u64,
    /// Bytes the allocator holds from the driver (allocated + cached).
    pub reserved: u64,
    /// The reporting worker's pid, when it says it (1..=i32::MAX, a Linux pid_t).
    pub pid: Option<u32>,
}

/// Reported by MCP `initialize` as `serverInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
}

impl Default for ServerInfo {
    /// `hpc-health` at this crate's version; the binding may pass the npm package's version.
    fn default() -> Self {
        ServerInfo { name: "hpc-health".into(), version: env!("CARGO_PKG_VERSION").into() }
    }
}

/// Bounds on what one message may cost, and what `initialize` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcLimits {
    /// Largest message accepted, in bytes of JSON text (default 1 MiB); over it → -32600.
    pub max_message_bytes: usize,
    /// Most requests in one batch (default 100); over it → -32600 for the whole batch.
    pub max_batch: usize,
    /// MCP `serverInfo`.
    pub server_info: ServerInfo,
    /// Longest `RpcBackend::authorize` may take (default `AUTHORIZE_TIMEOUT_MS`, 10 s); past it
    /// the call is refused with -32001, so a callback that never settles cannot hold a request.
    pub authorize_timeout: Duration,
}

/// Default `RpcLimits::max_message_bytes`: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Default `RpcLimits::max_batch`.
pub const DEFAULT_MAX_BATCH: usize = 100;

impl Default for RpcLimits {
    fn default() -> Self {
        RpcLimits {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
            server_info: ServerInfo::default(),
            authorize_timeout: Duration::from_millis(AUTHORIZE_TIMEOUT_MS.default as u64),
        }
    }
}
