//! JSON-RPC messages: any text (lossily UTF-8). `handle_json_rpc` never panics and always
//! answers with well-formed JSON-RPC 2.0 (or nothing, for notifications).
#![no_main]

use hpc_health::rpc::{handle_json_rpc, AnsweringBackend, RpcLimits};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn check_response(response: &Value) {
    let object = response.as_object().expect("a Response object");
    assert_eq!(object.get("jsonrpc"), Some(&json!("2.0")));
    assert!(matches!(object.get("id"), Some(Value::String(_) | Value::Number(_) | Value::Null)));
    assert_eq!(object.len(), 3, "{response}");
    match (object.get("result"), object.get("error")) {
        (Some(_), None) => {}
        (None, Some(error)) => {
            assert!(error["code"].is_i64(), "{response}");
            let message = error["message"].as_str().expect("an error message");
            assert!(!message.is_empty() && message.len() < 400, "{response}");
        }
        _ => panic!("neither result nor error: {response}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let limits = RpcLimits::default();
    match futures::executor::block_on(handle_json_rpc(&text, &AnsweringBackend { allow: true }, &limits)) {
        None => {}
        Some(Value::Array(responses)) => {
            assert!(!responses.is_empty() && responses.len() <= limits.max_batch);
            responses.iter().for_each(check_response);
        }
        Some(single) => check_response(&single),
    }
});
