//! The supervisor over JSON-RPC 2.0 and MCP: `handleJsonRpc(message, { authorize })`, and
//! the requirements' `monitoringTools`.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Env, Unknown, ValueType};
use napi_derive::napi;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use super::args::{describe, type_error, OptionsObject};
use super::health_supervisor::HealthSupervisor;
use super::hooks::{as_promise, read_function};
use super::input::{js_fields, Field, Fields};
use super::json::JsonOut;
use super::promise::{settle_later, Settlement};
use crate::monitors::gpu_health::{AllocatorReport, GpuHealthMonitor};
use crate::policy::thresholds::AUTHORIZE_TIMEOUT_MS;
use crate::rpc::{self, AllocatorStatsParams, CheckType, MethodError, RecoveryType, RpcBackend, RpcFuture, RpcLimits};
use crate::supervisor::{action_json, Supervisor};

/// What `authorize` returned: `true` (or a promise or thenable of it) allows; anything else
/// refuses.
pub enum Verdict {
    Now(bool),
    /// Awaited without napi's `Promise<T>`, which leaves native memory behind per promise
    /// (see `promise.rs`): an async `authorize` runs once per control request.
    Later(Settlement<bool>),
}

/// Only the boolean `true` allows.
///
/// # Safety
/// `env` and the handles given must be valid in the current JS thread's scope.
unsafe fn is_true(env: napi::sys::napi_env, value: napi::sys::napi_value) -> bool {
    let mut kind = 0;
    // SAFETY: `env` and `value` are valid in the current scope (this function's contract).
    let status = unsafe { napi::sys::napi_typeof(env, value, &mut kind) };
    status == napi::sys::Status::napi_ok
        && kind == napi::sys::ValueType::napi_boolean
        // SAFETY: the engine said just above that the value is a boolean.
        && unsafe { bool::from_napi_value(env, value) }.unwrap_or(false)
}

impl FromNapiValue for Verdict {
    unsafe fn from_napi_value(env: napi::sys::napi_env, value: napi::sys::napi_value) -> Result<Self> {
        let mut kind = 0;
        // SAFETY: napi-rs calls this conversion on the JS thread with a live `env` and `value`.
        napi::check_status!(unsafe { napi::sys::napi_typeof(env, value, &mut kind) })?;
        if kind != napi::sys::ValueType::napi_object && kind != napi::sys::ValueType::napi_function {
            // SAFETY: as above.
            return Ok(Verdict::Now(unsafe { is_true(env, value) }));
        }
        // A promise, or any object that may be a thenable: `Promise.resolve` adopts it as
        // `await` would (a `then` getter that throws rejects it), so both are awaited alike.
        // SAFETY: as above.
        match unsafe { as_promise(env, value) } {
            Ok(Some(promise)) => {
                // SAFETY: the settlement calls `convert` on the JS thread with the live environment and the settled
                // value.
                let convert = |env, value| Ok(unsafe { is_true(env, value) });
                // SAFETY: `env` and `promise` are valid in this conversion's scope.
                Ok(Verdict::Later(unsafe { settle_later(env, promise, convert)? }))
            }
            // No thenable, or `Promise.resolve` itself threw (nothing is left pending): refused.
            Ok(None) | Err(_) => Ok(Verdict::Now(false)),
        }
    }
}

type Authorize = ThreadsafeFunction<JsonOut, Verdict, JsonOut, Status, false, true>;

impl<'env> Field<'env> for Option<Arc<Authorize>> {
    /// The `authorize` callback, called off the JS thread's stack through a weak threadsafe
    /// function (it never keeps the process alive).
    fn read(options: &OptionsObject<'env>, key: &str) -> Result<Self> {
        let Some(value) = read_function(options.env(), options, key)? else { return Ok(None) };
        // SAFETY: `read_function` checked that the value is a function.
        let function: Function<'_, JsonOut, Verdict> = unsafe { value.cast()? };
        let threadsafe =
            function.build_threadsafe_function::<JsonOut>().weak::<true>().callee_handled::<false>().build()?;
        Ok(Some(Arc::new(threadsafe)))
    }
}

/// Options of `handleJsonRpc(message, options)`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct JsonRpcOptions {
    /// Whether this caller may run a control method; only `true` allows.
    #[napi(ts_type = "(request: { method: string, params: unknown }) => boolean | PromiseLike<boolean>")]
    pub authorize: Option<Arc<Authorize>>,
    /// Longest `authorize` may take before the call is refused (default 10000).
    pub authorize_timeout_ms: Option<f64>,
}

js_fields!(JsonRpcOptions { authorize = "authorize", authorize_timeout_ms = "authorizeTimeoutMs" check AUTHORIZE_TIMEOUT_MS });

struct SupervisorRpc {
    supervisor: Arc<Supervisor>,
    gpu: Option<Arc<GpuHealthMonitor>>,
    authorize: Option<Arc<Authorize>>,
}

impl RpcBackend for SupervisorRpc {
    fn get_system_health(&self, check_type: CheckType) -> RpcFuture<std::result::Result<Value, MethodError>> {
        let supervisor = self.supervisor.clone();
        Box::pin(async move {
            let health = supervisor.check_system_health(check_type).await.map_err(MethodError::internal)?;
            supervisor.remember(&health);
            serde_json::to_value(&health).map_err(|e| MethodError::internal(e.to_string()))
        })
    }

    fn recover_system(&self, error_type: RecoveryType) -> RpcFuture<std::result::Result<Value, MethodError>> {
        let supervisor = self.supervisor.clone();
        Box::pin(async move { Ok(action_json(&supervisor.recover_system(error_type).await)) })
    }

    fn report_allocator_stats(&self, stats: AllocatorStatsParams) -> std::result::Result<Value, MethodError> {
        let Some(gpu) = &self.gpu else {
            return Err(MethodError::server(-32002, "no gpuMonitor is attached to take allocator reports"));
        };
        let report = AllocatorReport {
            device: stats.device,
            allocated: stats.allocated,
            reserved: stats.reserved,
            pid: stats.pid.unwrap_or(0),
        };
        gpu.report_allocator_stats(report).map(|()| json!({ "accepted": true })).map_err(MethodError::invalid_params)
    }

    fn authorize(&self, method: &str, params: &Value) -> RpcFuture<bool> {
        let Some(authorize) = self.authorize.clone() else { return Box::pin(async { false }) };
        let request = json!({ "method": method, "params": params });
        Box::pin(async move {
            match authorize.call_async_catch(JsonOut(request)).await {
                Ok(Verdict::Now(allowed)) => allowed,
                // A rejection refuses.
                Ok(Verdict::Later(settlement)) => settlement.await.unwrap_or(false),
                // A callback that throws refuses.
                Err(_) => false,
            }
        })
    }
}

#[napi]
impl HealthSupervisor {
    /// Answers one JSON-RPC 2.0 message (a string, or one already parsed): the tools by
    /// name and MCP's `initialize`, `tools/list` and `tools/call`. Resolves the response
    /// object (or array, for a batch), or `null` for notifications. The control methods
    /// (`recoverSystem`, `reportAllocatorStats`) run only when `authorize({ method, params })`
    /// returns (or resolves, promise or thenable) `true` within `authorizeTimeoutMs` (default
    /// 10000); otherwise they are refused with -32001.
    #[napi(
        ts_args_type = "message: string | object, options?: JsonRpcOptions",
        ts_return_type = "Promise<object | null>"
    )]
    pub fn handle_json_rpc<'env>(
        &self,
        env: &'env Env,
        message: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, JsonOut>> {
        super::task::guarded(env, "HealthSupervisor.handleJsonRpc", || {
            let options = JsonRpcOptions::read(env, options, "options")?;
            let mut limits = RpcLimits::default();
            let mut authorize = None;
            if let Some(options) = options {
                if let Some(ms) = options.authorize_timeout_ms {
                    limits.authorize_timeout = Duration::from_millis(ms as u64);
                }
                authorize = options.authorize;
            }
            enum Message {
                Text(String),
                Parsed(Value),
            }
            let message = match message.get_type()? {
                // SAFETY: the match arm checked that the value is a string.
                ValueType::String => Message::Text(unsafe { message.cast()? }),
                ValueType::Object => Message::Parsed(super::json_value(env, message, "message")?),
                _ => {
                    return Err(type_error(
                        env,
                        "ERR_INVALID_ARG_TYPE",
                        format!("message must be a string or an object, got {}", describe(&message)),
                    ))
                }
            };
            let backend =
                SupervisorRpc { supervisor: self.core.clone(), gpu: self.core.parts().gpu_monitor.clone(), authorize };
            env.spawn_future(async move {
                let response = match message {
                    Message::Text(text) => rpc::handle_json_rpc(&text, &backend, &limits).await,
                    Message::Parsed(value) => rpc::handle_json_rpc_value(value, &backend, &limits).await,
                };
                Ok(JsonOut(response.unwrap_or(Value::Null)))
            })
        })
    }
}

/// The requirements' `monitoringTools`, verbatim in shape (`{ getSystemHealth: { description,
/// inputSchema }, recoverSystem: { description, inputSchema } }`), frozen. Its type is in
/// `typings-header.d.ts`.
pub fn monitoring_tools(env: &Env) -> Result<Object<'_>> {
    super::args::frozen(env, rpc::monitoring_tools())
}
