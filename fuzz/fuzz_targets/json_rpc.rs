//! JSON-RPC messages: any text (lossily UTF-8). `handle_json_rpc` never panics and always
//! answers what JSON-RPC 2.0 says (or nothing, for notifications), as the tests' checker
//! (`tests/support/json_rpc.rs`) reads the spec.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/mod.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    support::verdict::json_rpc_response(&String::from_utf8_lossy(data));
});
