//! Health policy as data: thresholds with their defaults and ranges, and the rules that
//! turn a sample into a verdict.

pub mod crossing;
pub mod forecast;
pub mod gpu_health;
pub mod issues;
pub mod pressure;
pub mod thresholds;
pub mod xid_catalog;
