//! Test support shared by the integration tests in `tests/`, the corpus writer
//! (`scripts/write-corpus.rs`) and the fuzz targets (`fuzz/`): one seeded generator, one set
//! of byte mutations, one scratch-directory helper, one JSON-RPC fuzzer with its backend, the
//! valid inputs each decoder starts from, and the verdicts the committed corpus is named for.
//!
//! Everything here goes through the crate's public API. Each user includes it as a module
//! (`mod support;`, or `#[path = ".../tests/support/mod.rs"] mod support;`), so not every
//! user needs every item.
#![allow(dead_code)]

pub mod checks;
pub mod corpus;
pub mod json_rpc;
pub mod mutation;
pub mod rng;
pub mod samples;
pub mod scratch;
pub mod verdict;
