//! Health policy as data: thresholds with their defaults and ranges, and the rules that
//! turn a sample into a verdict.

pub mod pressure;
pub mod thresholds;
