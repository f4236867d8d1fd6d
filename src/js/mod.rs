//! The JavaScript binding: the only place `#[napi]` appears. It converts and validates;
//! all behaviour lives in the plain-Rust core.

mod args;
mod gpu_health_monitor;
mod memory_monitor;
mod task;
