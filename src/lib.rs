//! hpc-health: GPU and host health monitoring and recovery for Node.js GPU services.
//!
//! The crate is a plain Rust core (`sampling`, `policy`) that knows nothing of JavaScript,
//! and one binding folder (`js`) where every `#[napi]` item lives.

pub mod durable;
pub mod health;
pub mod history;
pub mod incident;
#[cfg(test)]
mod layering;
pub mod monitors;
pub mod policy;
pub mod recovery;
pub mod report;
pub mod rpc;
pub mod sampling;
pub mod shapes;
pub mod supervisor;
mod sync;
pub mod vocabulary;
pub mod wake;

mod js;
