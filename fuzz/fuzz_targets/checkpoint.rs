//! Checkpoint files: `decode_checkpoint` never panics; what it accepts is exactly the
//! canonical encoding of what it returns, and a payload the binding can parse.
#![no_main]

use hpc_health::durable::checkpoint::{decode_checkpoint, encode_checkpoint};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/mod.rs"]
mod support;

/// The sequence number the corpus files are named for.
const SEQ: u64 = support::verdict::CHECKPOINT_SEQ;

fuzz_target!(|data: &[u8]| {
    if let Ok((timestamp, payload)) = decode_checkpoint(data, SEQ) {
        assert_eq!(encode_checkpoint(SEQ, timestamp, payload), data, "accepted bytes that are not canonical");
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(payload) {
            panic!("accepted a payload the binding cannot parse: {e}");
        }
    }
});
