//! The JavaScript binding: the only place `#[napi]` appears. It converts and validates;
//! all behaviour lives in the plain-Rust core.

mod args;
mod durable;
mod health_supervisor;
mod json_rpc;
mod gpu_recovery;
mod hooks;
mod memory_recovery;
mod recovery_outcome;
mod gpu_health_monitor;
mod memory_monitor;
mod task;
