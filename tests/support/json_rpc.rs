//! The JSON-RPC fuzzer: one backend that answers every method (or refuses, or fails), one
//! message generator (random requests and batches, deep nesting, raw bytes, and mutated
//! valid messages), and one checker that reads JSON-RPC 2.0 independently of the dispatcher.

use hpc_health::rpc::{AllocatorStatsParams, CheckType, MethodError, RecoveryType, RpcBackend, RpcFuture, RpcLimits};
use serde_json::{json, Value};

use super::mutation::{mutate, nested_arrays};
use super::rng::Rng;

/// A backend that answers every method at once, so that any input can reach every path of
/// the dispatcher; `allow` is what `authorize` says, and with `fail` set every method fails
/// with that error.
pub struct AnsweringBackend {
    pub allow: bool,
    pub fail: Option<MethodError>,
}

impl AnsweringBackend {
    pub fn allowing() -> Self {
        AnsweringBackend { allow: true, fail: None }
    }

    pub fn refusing() -> Self {
        AnsweringBackend { allow: false, fail: None }
    }

    pub fn failing(error: MethodError) -> Self {
        AnsweringBackend { allow: true, fail: Some(error) }
    }

    fn answer(&self, ok: Value) -> Result<Value, MethodError> {
        self.fail.clone().map_or(Ok(ok), Err)
    }
}

impl RpcBackend for AnsweringBackend {
    fn get_system_health(&self, check_type: CheckType) -> RpcFuture<Result<Value, MethodError>> {
        let answer = self.answer(json!({ "status": "healthy", "checkType": check_type.as_str() }));
        Box::pin(async move { answer })
    }

    fn recover_system(&self, error_type: RecoveryType) -> RpcFuture<Result<Value, MethodError>> {
        let answer = self.answer(json!({ "recovered": true, "errorType": error_type.as_str() }));
        Box::pin(async move { answer })
    }

    fn report_allocator_stats(&self, stats: AllocatorStatsParams) -> Result<Value, MethodError> {
        self.answer(json!({ "accepted": true, "device": stats.device }))
    }

    fn authorize(&self, _method: &str, _params: &Value) -> RpcFuture<bool> {
        let allow = self.allow;
        Box::pin(async move { allow })
    }
}

// ---------------------------------------------------------------------------------------
// The checker

pub const RPC_CODES: [i64; 6] = [-32700, -32600, -32601, -32602, -32603, -32001];

/// What the dispatcher must answer to one element: `None` for a valid notification, else
/// the id to answer with and whether the Request object itself is invalid (-32600).
pub fn expected_answer(request: &Value) -> Option<(Value, bool)> {
    let Value::Object(object) = request else { return Some((Value::Null, true)) };
    let id = match object.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id.clone()),
        Some(_) => return Some((Value::Null, true)),
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    let valid = object.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && object.get("method").is_some_and(Value::is_string)
        && object.get("params").is_none_or(|p| p.is_array() || p.is_object());
    match (valid, id) {
        (false, _) => Some((reply_id, true)),
        (true, None) => None,
        (true, Some(id)) => Some((id, false)),
    }
}

/// Checks one Response object: exactly `jsonrpc`, `id` and one of `result` / `error`, a
/// known code and a short message (nothing of the input is echoed at length but the id).
pub fn check_response_object(response: &Value, id: &Value, invalid_request: Option<bool>) {
    let object = response.as_object().unwrap_or_else(|| panic!("not an object: {response}"));
    assert_eq!(object.get("jsonrpc"), Some(&json!("2.0")), "{response}");
    assert_eq!(object.get("id"), Some(id), "{response}");
    assert_eq!(object.len(), 3, "{response}");
    match (object.get("result"), object.get("error")) {
        (Some(_), None) => assert_ne!(invalid_request, Some(true), "invalid request answered: {response}"),
        (None, Some(error)) => {
            let code = error["code"].as_i64().unwrap_or_else(|| panic!("{response}"));
            assert!(RPC_CODES.contains(&code), "{response}");
            if let Some(invalid) = invalid_request {
                assert_eq!(code == -32600, invalid, "{response}");
            }
            let message = error["message"].as_str().unwrap_or_else(|| panic!("{response}"));
            assert!(!message.is_empty() && message.len() < 400, "{response}");
            let members = error.as_object().unwrap_or_else(|| panic!("{response}"));
            assert!(members.keys().all(|k| ["code", "message", "data"].contains(&k.as_str())), "{response}");
        }
        _ => panic!("neither result nor error: {response}"),
    }
}

/// The dispatcher's answer to `text` against an independent reading of the spec.
pub fn check_rpc_response(text: &str, limits: &RpcLimits, response: &Option<Value>) {
    if let Some(response) = response {
        let again: Value = serde_json::from_str(&response.to_string()).unwrap();
        assert_eq!(&again, response, "the answer does not survive a round trip through JSON text");
    }
    let error_only = |code: i64| {
        let response = response.as_ref().unwrap_or_else(|| panic!("no answer to {text:?}"));
        check_response_object(response, &Value::Null, None);
        assert_eq!(response["error"]["code"], code, "{response}");
    };
    if text.len() > limits.max_message_bytes {
        return error_only(-32600);
    }
    let Ok(message) = serde_json::from_str::<Value>(text) else { return error_only(-32700) };
    match &message {
        Value::Array(batch) if batch.is_empty() || batch.len() > limits.max_batch => error_only(-32600),
        Value::Array(batch) => {
            let expected: Vec<(Value, bool)> = batch.iter().filter_map(expected_answer).collect();
            match response {
                None => assert!(expected.is_empty(), "batch not answered: {text:?}"),
                Some(Value::Array(answers)) => {
                    assert!(!answers.is_empty(), "empty batch answer to {text:?}");
                    assert_eq!(answers.len(), expected.len(), "{text:?}");
                    for (answer, (id, invalid)) in answers.iter().zip(&expected) {
                        check_response_object(answer, id, Some(*invalid));
                    }
                }
                Some(other) => panic!("batch answered with {other}"),
            }
        }
        single => match (expected_answer(single), response) {
            (None, None) => {}
            (Some((id, invalid)), Some(answer)) => check_response_object(answer, &id, Some(invalid)),
            (expected, got) => panic!("{text:?}: expected {expected:?}, got {got:?}"),
        },
    }
}

// ---------------------------------------------------------------------------------------
// The generator

pub const METHODS: &[&str] = &[
    "getSystemHealth",
    "recoverSystem",
    "reportAllocatorStats",
    "initialize",
    "notifications/initialized",
    "ping",
    "tools/list",
    "tools/call",
    "unknown",
    "",
    "rpc.discover",
    "GETSYSTEMHEALTH",
];

pub fn random_string(rng: &mut Rng) -> String {
    let pieces = ["a", "é", "\u{1F600}", "\"", "\\", "\n", "\u{0}", "quick", "full", "gpu", " ", "\u{fffd}"];
    let n = if rng.one_in(20) { 100 + rng.below(300) } else { rng.below(6) };
    (0..n).map(|_| *rng.pick(&pieces)).collect()
}

pub fn random_json(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.one_in(2)),
        2 => json!(*rng.pick(&[0i64, 1, -1, i64::MIN, i64::MAX, 3, 255])),
        3 => json!(*rng.pick(&[u64::MAX, 1 << 53, (1 << 53) + 1])),
        4 => json!(*rng.pick(&[0.5, -0.0, 1e300, 2.0, 9007199254740992.0, 1.8446744073709552e19, -3.0])),
        5 => json!(random_string(rng)),
        6 | 7 => Value::Array((0..rng.below(4)).map(|_| random_json(rng, depth - 1)).collect()),
        _ => Value::Object((0..rng.below(4)).map(|_| (random_string(rng), random_json(rng, depth - 1))).collect()),
    }
}

/// Arguments for a tool: mostly plausible, often out of range.
pub fn tool_arguments(rng: &mut Rng, tool: &str) -> Value {
    match tool {
        "getSystemHealth" => match rng.below(4) {
            0 => json!({ "checkType": *rng.pick(&["quick", "full", "medium", ""]) }),
            1 => json!([*rng.pick(&["quick", "full", "x"])]),
            2 => json!({}),
            _ => json!({ "checkType": random_json(rng, 1), "extra": 1 }),
        },
        "recoverSystem" => match rng.below(3) {
            0 => json!({ "errorType": *rng.pick(&["memory", "gpu", "process", "disk"]) }),
            1 => json!([*rng.pick(&["memory", "gpu"]), "extra"]),
            _ => json!({}),
        },
        "reportAllocatorStats" => {
            let number = |rng: &mut Rng| {
                rng.pick(&[
                    json!(0),
                    json!(7),
                    json!(-1),
                    json!(1.5),
                    json!(4294967296u64),
                    json!(u64::MAX),
                    json!(1.8446744073709552e19),
                    json!(9007199254740993.0),
                    json!(2147483648u64),
                    json!("1"),
                ])
                .clone()
            };
            let mut object = serde_json::Map::new();
            for field in ["device", "allocated", "reserved", "pid"] {
                if !rng.one_in(5) {
                    object.insert(field.into(), number(rng));
                }
            }
            Value::Object(object)
        }
        _ => random_json(rng, 2),
    }
}

pub fn random_params(rng: &mut Rng, method: &str) -> Option<Value> {
    match rng.below(10) {
        0 => None,
        1 => Some(random_json(rng, 3)),
        _ => Some(match method {
            "initialize" => {
                json!({ "protocolVersion": *rng.pick(&["2025-06-18", "2024-11-05", "1999-01-01"]), "capabilities": {} })
            }
            "tools/call" => {
                let tool = *rng.pick(&["getSystemHealth", "recoverSystem", "reportAllocatorStats", "nope"]);
                match rng.below(4) {
                    0 => json!({ "name": tool }),
                    1 => json!({ "name": tool, "arguments": random_json(rng, 1) }),
                    _ => json!({ "name": tool, "arguments": tool_arguments(rng, tool) }),
                }
            }
            other => tool_arguments(rng, other),
        }),
    }
}

/// Params a method accepts.
pub fn valid_params(rng: &mut Rng, method: &str) -> Option<Value> {
    match method {
        "getSystemHealth" => {
            Some(rng.pick(&[json!({}), json!({ "checkType": "quick" }), json!(["full"]), json!([])]).clone())
        }
        "recoverSystem" => Some(json!({ "errorType": *rng.pick(&["memory", "gpu", "process"]) })),
        "reportAllocatorStats" => {
            Some(json!({ "device": rng.below(8), "allocated": 1u64 << 30, "reserved": 3u64 << 30 }))
        }
        "initialize" => Some(json!({ "protocolVersion": "2025-06-18", "capabilities": {} })),
        "tools/call" => Some(json!({ "name": "getSystemHealth", "arguments": { "checkType": "full" } })),
        _ => None,
    }
}

pub fn random_request(rng: &mut Rng) -> Value {
    if rng.one_in(2) {
        // Well formed, so that the tools themselves are reached often.
        let method = *rng.pick(&METHODS[..8]);
        let mut request = json!({ "jsonrpc": "2.0", "method": method, "id": rng.below(100) });
        if let Some(params) = valid_params(rng, method) {
            request["params"] = params;
        }
        return request;
    }
    let mut object = serde_json::Map::new();
    if !rng.one_in(12) {
        let version = if rng.one_in(10) {
            rng.pick(&[json!("1.0"), json!(2.0), json!(null), json!("2.0 ")]).clone()
        } else {
            json!("2.0")
        };
        object.insert("jsonrpc".into(), version);
    }
    let method = *rng.pick(METHODS);
    if !rng.one_in(15) {
        let value = if rng.one_in(15) { random_json(rng, 1) } else { json!(method) };
        object.insert("method".into(), value);
    }
    if let Some(params) = random_params(rng, method) {
        object.insert("params".into(), params);
    }
    if !rng.one_in(5) {
        let id = match rng.below(8) {
            0 => json!(null),
            1 => json!(random_string(rng)),
            2 => json!(*rng.pick(&[1.5, 1e300, -0.0])),
            3 => random_json(rng, 1),
            _ => json!(rng.below(1000)),
        };
        object.insert("id".into(), id);
    }
    if rng.one_in(10) {
        object.insert(random_string(rng), random_json(rng, 1));
    }
    if rng.one_in(20) {
        return random_json(rng, 2);
    }
    Value::Object(object)
}

pub fn random_message(rng: &mut Rng) -> String {
    let text = match rng.below(10) {
        0..=5 => random_request(rng).to_string(),
        6 | 7 => {
            let n = *rng.pick(&[0usize, 1, 2, 3, 5, 8]);
            Value::Array((0..n).map(|_| random_request(rng)).collect()).to_string()
        }
        8 => {
            let depth = *rng.pick(&[1usize, 127, 128, 129, 1000, 50_000]);
            match rng.below(4) {
                0 => nested_arrays(depth),
                1 => "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth),
                2 => format!(
                    r#"{{"jsonrpc":"2.0","id":1,"method":"getSystemHealth","params":{{"checkType":{}}}}}"#,
                    nested_arrays(depth)
                ),
                _ => "[".repeat(depth),
            }
        }
        _ => {
            let n = rng.below(40);
            String::from_utf8_lossy(&rng.bytes(n)).into_owned()
        }
    };
    if rng.one_in(4) {
        let (bytes, _) = mutate(rng, text.as_bytes(), &[]);
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        text
    }
}

// ---------------------------------------------------------------------------------------
// Mutated valid messages: text-level edits (always valid UTF-8) and structural ones

/// A valid message (`SEEDS`) mutated: in its text (even `round`) or as a parsed value.
pub fn mutated_seed(rng: &mut Rng, round: usize) -> String {
    let seed = *rng.pick(SEEDS);
    if round % 2 == 0 {
        mutate_text(rng, seed)
    } else {
        let mut value: Value = serde_json::from_str(seed).unwrap();
        for _ in 0..=rng.below(3) {
            mutate_value(rng, &mut value);
        }
        value.to_string()
    }
}

/// Messages that are valid JSON-RPC before mutation.
pub const SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":{"checkType":"full"},"id":1}"#,
    r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":["quick"],"id":"a"}"#,
    r#"{"jsonrpc":"2.0","method":"recoverSystem","params":{"errorType":"gpu"},"id":null}"#,
    r#"{"jsonrpc":"2.0","method":"recoverSystem","params":["memory"]}"#,
    r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":0,"allocated":1,"reserved":2,"pid":3},"id":4}"#,
    r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":[0,1,2],"id":4.5}"#,
    r#"{"jsonrpc":"2.0","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}},"id":0}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    r#"{"jsonrpc":"2.0","method":"tools/list","id":2}"#,
    r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"recoverSystem","arguments":{"errorType":"process"}},"id":3}"#,
    r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"getSystemHealth"},"id":3}"#,
    r#"[{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc":"2.0","method":"ping"},{"foo":"boo"}]"#,
    r#"[1,2,3]"#,
    r#"[]"#,
];

pub const SEED_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "null",
    "true",
    "0",
    "-1",
    "1.5",
    "1e999",
    "-0",
    "1e308",
    "18446744073709551616",
    "\"2.0\"",
    "\"id\"",
    "\"method\"",
    "\"params\"",
    "\"jsonrpc\"",
    "\"tools/call\"",
    "\"recoverSystem\"",
    "\"getSystemHealth\"",
    "\"reportAllocatorStats\"",
    "\"arguments\"",
    "\"name\"",
    r#"{"jsonrpc":"2.0","method":"ping","id":1}"#,
    "é",
    "😀",
    "\u{0}",
    "\\u0000",
    "\\ud800",
    " ",
    "\n",
];

/// A random JSON value, for structural mutations that keep the message parseable.
pub fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next_u64() as i64),
        3 => json!((rng.next_u64() as f64) / 7.0),
        4 => json!(*rng.pick(&["quick", "full", "gpu", "memory", "process", "2.0", "", "getSystemHealth"])),
        5 => json!(rng.below(4)),
        6 => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => {
            let keys =
                ["jsonrpc", "method", "params", "id", "checkType", "errorType", "device", "name", "arguments", "x"];
            Value::Object(
                (0..rng.below(4)).map(|_| (rng.pick(&keys).to_string(), random_value(rng, depth + 1))).collect(),
            )
        }
    }
}

/// Replaces one randomly chosen node of `value` (possibly the root) with a random value.
pub fn mutate_value(rng: &mut Rng, value: &mut Value) {
    let descend = rng.below(6) != 0; // mostly deep, so many messages stay valid requests
    match value {
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.below(items.len());
            mutate_value(rng, &mut items[i]);
        }
        Value::Object(object) if descend && !object.is_empty() => {
            let key = object.keys().nth(rng.below(object.len())).unwrap().clone();
            if rng.below(5) == 0 {
                object.remove(&key);
            } else {
                mutate_value(rng, object.get_mut(&key).unwrap());
            }
        }
        _ => *value = random_value(rng, 0),
    }
}

/// Character-level mutations (always valid UTF-8, as `&str` must be).
pub fn mutate_text(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(4) {
            0 if !chars.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            1 => {
                let token: Vec<char> = rng.pick(SEED_TOKENS).chars().collect();
                chars.splice(at..at, token);
            }
            2 if at < chars.len() => chars[at] = (b' ' + rng.below(95) as u8) as char,
            _ if !chars.is_empty() => {
                let start = rng.below(chars.len());
                let end = (start + rng.below(16)).min(chars.len());
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(at..at, copy);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}
