//! The JavaScript binding: the only place `#[napi]` appears. It converts and validates;
//! all behaviour lives in the plain-Rust core.

mod args;
mod checkpoint_manager;
mod durable;
mod engine;
mod gpu_health_monitor;
mod gpu_recovery;
mod health_supervisor;
mod history;
mod hooks;
mod incident_log;
mod input;
mod json;
mod json_rpc;
mod memory_monitor;
mod memory_recovery;
mod promise;
mod promise_batch;
mod receiver;
mod recovery_outcome;
mod report;
mod task;

pub(crate) use json::{json_value, optional_json_value};

use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Runs once per load, after napi-rs has defined the classes: puts `monitoringTools` on the
/// module and guards every class member against a foreign `this`.
#[cfg_attr(test, allow(dead_code))]
#[napi(module_exports)]
pub fn init_module(exports: Object, env: Env) -> Result<()> {
    task::catch_panic(|| init_exports(exports, env))
        .unwrap_or_else(|message| Err(napi::Error::new(napi::Status::GenericFailure, message)))
}

fn init_exports(mut exports: Object, env: Env) -> Result<()> {
    exports.set_named_property("monitoringTools", json_rpc::monitoring_tools(&env)?)?;
    receiver::guard_members::<memory_monitor::MemoryMonitor>(&env, &exports, "MemoryMonitor")?;
    receiver::guard_members::<gpu_health_monitor::GpuHealthMonitor>(&env, &exports, "GPUHealthMonitor")?;
    receiver::guard_members::<memory_recovery::MemoryRecovery>(&env, &exports, "MemoryRecovery")?;
    receiver::guard_members::<gpu_recovery::GpuRecovery>(&env, &exports, "GPURecovery")?;
    receiver::guard_members::<checkpoint_manager::CheckpointManager>(&env, &exports, "CheckpointManager")?;
    receiver::guard_members::<incident_log::IncidentLog>(&env, &exports, "IncidentLog")?;
    receiver::guard_members::<health_supervisor::HealthSupervisor>(&env, &exports, "HealthSupervisor")?;
    Ok(())
}
