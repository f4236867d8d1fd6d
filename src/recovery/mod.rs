//! Recovery flows that cannot hang, storm or lie: every step under a timeout, one run at a
//! time per recovery object, and every run leaving a complete record (written ahead to the
//! incident log when one is attached).

pub mod engine;
pub mod gpu;
pub mod memory;
pub mod native_heap;
