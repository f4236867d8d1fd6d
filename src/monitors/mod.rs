//! Monitors: a sampler plus the thresholds that judge its samples. These are what the
//! JavaScript classes wrap and what the supervisor drives.

pub mod gpu_health;
pub mod memory;
