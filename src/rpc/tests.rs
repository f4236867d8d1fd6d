//! Tests of the dispatcher. The backend here is a fake collaborator that records its calls.

use super::error::*;
use super::mcp::{PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS};
use super::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------- fake backends

/// A backend whose behaviour each test picks; every call is recorded in `calls`.
#[derive(Default, Clone)]
struct Fake {
    /// What `authorize` answers.
    allow: bool,
    /// `getSystemHealth` / `recoverSystem` / `reportAllocatorStats` fail with this.
    fail: Option<MethodError>,
    /// The backend panics (inside its future, or for the sync method, in the call).
    panic: bool,
    /// What `reportAllocatorStats` returns on success (default: an object).
    allocator_result: Option<Value>,
    /// `authorize` never settles.
    authorize_hangs: bool,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn allowing() -> Self {
        Fake { allow: true, ..Fake::default() }
    }

    fn failing(error: MethodError) -> Self {
        Fake { fail: Some(error), allow: true, ..Fake::default() }
    }

    fn panicking() -> Self {
        Fake { panic: true, allow: true, ..Fake::default() }
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn outcome(&self, ok: Value) -> RpcFuture<Result<Value, MethodError>> {
        let (fail, panic) = (self.fail.clone(), self.panic);
        Box::pin(async move {
            if panic {
                panic!("fake backend panic (expected by the test)");
            }
            fail.map_or(Ok(ok), Err)
        })
    }
}

impl RpcBackend for Fake {
    fn get_system_health(&self, check_type: CheckType) -> RpcFuture<Result<Value, MethodError>> {
        self.record(format!("getSystemHealth:{}", check_type.as_str()));
        self.outcome(json!({ "status": "healthy", "checkType": check_type.as_str() }))
    }

    fn recover_system(&self, error_type: RecoveryType) -> RpcFuture<Result<Value, MethodError>> {
        self.record(format!("recoverSystem:{}", error_type.as_str()));
        self.outcome(json!({ "recovered": true, "errorType": error_type.as_str() }))
    }

    fn report_allocator_stats(&self, stats: AllocatorStatsParams) -> Result<Value, MethodError> {
        self.record(format!("reportAllocatorStats:{stats:?}"));
        if self.panic {
            panic!("fake backend panic (expected by the test)");
        }
        if let Some(error) = &self.fail {
            return Err(error.clone());
        }
        Ok(self.allocator_result.clone().unwrap_or_else(|| json!({ "accepted": true, "device": stats.device })))
    }

    fn authorize(&self, method: &str, params: &Value) -> RpcFuture<bool> {
        self.record(format!("authorize:{method}:{params}"));
        if self.authorize_hangs {
            return Box::pin(futures::future::pending());
        }
        let allow = self.allow;
        Box::pin(async move { allow })
    }
}

/// A backend that keeps the trait's default `authorize`.
#[derive(Default)]
struct DefaultAuth {
    recovered: Mutex<bool>,
}

impl RpcBackend for DefaultAuth {
    fn get_system_health(&self, _: CheckType) -> RpcFuture<Result<Value, MethodError>> {
        Box::pin(async { Ok(json!({})) })
    }
    fn recover_system(&self, _: RecoveryType) -> RpcFuture<Result<Value, MethodError>> {
        *self.recovered.lock().unwrap() = true;
        Box::pin(async { Ok(json!({})) })
    }
    fn report_allocator_stats(&self, _: AllocatorStatsParams) -> Result<Value, MethodError> {
        Ok(json!({}))
    }
}

// ---------------------------------------------------------------- helpers

async fn call(backend: &dyn RpcBackend, message: &str) -> Option<Value> {
    handle_json_rpc(message, backend, &RpcLimits::default()).await
}

fn code(response: &Value) -> i64 {
    response["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error response: {response}"))
}

fn message(response: &Value) -> &str {
    response["error"]["message"].as_str().unwrap()
}

/// Asserts `response` is a well-formed JSON-RPC 2.0 Response object.
fn assert_response_object(response: &Value) {
    let object = response.as_object().unwrap_or_else(|| panic!("response not an object: {response}"));
    assert!(object.keys().all(|k| ["jsonrpc", "id", "result", "error"].contains(&k.as_str())), "{response}");
    assert_eq!(object.get("jsonrpc"), Some(&json!("2.0")), "{response}");
    assert!(matches!(object.get("id"), Some(Value::String(_) | Value::Number(_) | Value::Null)), "{response}");
    assert!(object.contains_key("result") != object.contains_key("error"), "{response}");
    if let Some(error) = object.get("error") {
        let error = error.as_object().unwrap_or_else(|| panic!("error not an object: {response}"));
        assert!(error.keys().all(|k| ["code", "message", "data"].contains(&k.as_str())), "{response}");
        assert!(error.get("code").and_then(Value::as_i64).is_some(), "{response}");
        assert!(error.get("message").and_then(Value::as_str).is_some(), "{response}");
    }
}

/// Asserts `response` is nothing, a Response object, or a non-empty array of them, and survives
/// a round trip through JSON text.
fn assert_valid_reply(response: &Option<Value>) {
    match response {
        None => {}
        Some(Value::Array(responses)) => {
            assert!(!responses.is_empty(), "empty batch response");
            responses.iter().for_each(assert_response_object);
        }
        Some(response) => assert_response_object(response),
    }
    if let Some(response) = response {
        let text = serde_json::to_string(response).unwrap();
        assert_eq!(&serde_json::from_str::<Value>(&text).unwrap(), response);
    }
}

// ---------------------------------------------------------------- conformance table

#[derive(Clone, Copy, Debug)]
enum Backend {
    /// Refuses authorization.
    Refusing,
    Allowing,
    /// Fails every tool with -32603.
    Failing,
    /// Panics in every tool.
    Panicking,
    /// Fails with a code reserved for the protocol (must come out as -32603).
    ReservedCode,
    /// Fails with server error -32050 (must pass through).
    ServerError,
}

impl Backend {
    fn make(self) -> Fake {
        match self {
            Backend::Refusing => Fake::default(),
            Backend::Allowing => Fake::allowing(),
            Backend::Failing => Fake::failing(MethodError::internal("NVML is gone")),
            Backend::Panicking => Fake::panicking(),
            Backend::ReservedCode => Fake::failing(MethodError::new(PARSE_ERROR, "pretend parse error")),
            Backend::ServerError => Fake::failing(MethodError::server(-32050, "GPU busy")),
        }
    }
}

#[derive(Debug)]
enum Expect {
    /// A result, with this id.
    Ok(Value),
    /// An error with this code, and this id.
    Err(i64, Value),
    /// No response at all.
    Nothing,
}

/// One row per way to fail (and a few ways to succeed): name, backend, request, expectation.
#[rustfmt::skip]
fn conformance_rows() -> Vec<(&'static str, Backend, &'static str, Expect)> {
    use Backend::*;
    use Expect::*;
    let n = Value::Null;
    vec![
        // ---- -32700 Parse error, id null
        ("truncated object", Refusing, r#"{"jsonrpc":"2.0","method":"ping","id":1"#, Err(PARSE_ERROR, n.clone())),
        ("empty message", Refusing, "", Err(PARSE_ERROR, n.clone())),
        ("whitespace only", Refusing, " \n\t", Err(PARSE_ERROR, n.clone())),
        ("trailing garbage", Refusing, r#"{"jsonrpc":"2.0","method":"ping","id":1} x"#, Err(PARSE_ERROR, n.clone())),
        ("single quotes", Refusing, "{'jsonrpc':'2.0'}", Err(PARSE_ERROR, n.clone())),
        ("lone surrogate", Refusing, r#"{"jsonrpc":"2.0","method":"\ud800","id":1}"#, Err(PARSE_ERROR, n.clone())),
        ("number overflow", Refusing, r#"{"jsonrpc":"2.0","method":"ping","id":1e400}"#, Err(PARSE_ERROR, n.clone())),
        // ---- -32600 Invalid Request, each way
        ("number, not object", Refusing, "1", Err(INVALID_REQUEST, n.clone())),
        ("string, not object", Refusing, r#""ping""#, Err(INVALID_REQUEST, n.clone())),
        ("null, not object", Refusing, "null", Err(INVALID_REQUEST, n.clone())),
        ("bool, not object", Refusing, "true", Err(INVALID_REQUEST, n.clone())),
        ("empty object", Refusing, "{}", Err(INVALID_REQUEST, n.clone())),
        ("empty batch", Refusing, "[]", Err(INVALID_REQUEST, n.clone())),
        ("jsonrpc missing", Refusing, r#"{"method":"ping","id":1}"#, Err(INVALID_REQUEST, json!(1))),
        ("jsonrpc 1.0", Refusing, r#"{"jsonrpc":"1.0","method":"ping","id":1}"#, Err(INVALID_REQUEST, json!(1))),
        ("jsonrpc number", Refusing, r#"{"jsonrpc":2.0,"method":"ping","id":1}"#, Err(INVALID_REQUEST, json!(1))),
        ("jsonrpc 2.0 padded", Refusing, r#"{"jsonrpc":"2.0 ","method":"ping","id":1}"#, Err(INVALID_REQUEST, json!(1))),
        ("method missing", Refusing, r#"{"jsonrpc":"2.0","id":"a"}"#, Err(INVALID_REQUEST, json!("a"))),
        ("method number", Refusing, r#"{"jsonrpc":"2.0","method":1,"id":2}"#, Err(INVALID_REQUEST, json!(2))),
        ("method null", Refusing, r#"{"jsonrpc":"2.0","method":null,"id":2}"#, Err(INVALID_REQUEST, json!(2))),
        ("id object", Refusing, r#"{"jsonrpc":"2.0","method":"ping","id":{}}"#, Err(INVALID_REQUEST, n.clone())),
        ("id array", Refusing, r#"{"jsonrpc":"2.0","method":"ping","id":[1]}"#, Err(INVALID_REQUEST, n.clone())),
        ("id bool", Refusing, r#"{"jsonrpc":"2.0","method":"ping","id":true}"#, Err(INVALID_REQUEST, n.clone())),
        ("params string", Refusing, r#"{"jsonrpc":"2.0","method":"ping","params":"x","id":3}"#, Err(INVALID_REQUEST, json!(3))),
        ("params number", Refusing, r#"{"jsonrpc":"2.0","method":"ping","params":1,"id":3}"#, Err(INVALID_REQUEST, json!(3))),
        ("params null", Refusing, r#"{"jsonrpc":"2.0","method":"ping","params":null,"id":3}"#, Err(INVALID_REQUEST, json!(3))),
        ("params bool", Refusing, r#"{"jsonrpc":"2.0","method":"ping","params":false,"id":3}"#, Err(INVALID_REQUEST, json!(3))),
        // An invalid Request gets an answer even without an id (spec section 7).
        ("invalid, no id", Refusing, r#"{"jsonrpc":"2.0","method":1}"#, Err(INVALID_REQUEST, n.clone())),
        // ---- -32601 Method not found
        ("unknown method", Refusing, r#"{"jsonrpc":"2.0","method":"foobar","id":"1"}"#, Err(METHOD_NOT_FOUND, json!("1"))),
        ("case matters", Refusing, r#"{"jsonrpc":"2.0","method":"GetSystemHealth","id":1}"#, Err(METHOD_NOT_FOUND, json!(1))),
        ("empty method", Refusing, r#"{"jsonrpc":"2.0","method":"","id":1}"#, Err(METHOD_NOT_FOUND, json!(1))),
        ("rpc. reserved", Refusing, r#"{"jsonrpc":"2.0","method":"rpc.discover","id":1}"#, Err(METHOD_NOT_FOUND, json!(1))),
        ("unknown, notification", Refusing, r#"{"jsonrpc":"2.0","method":"foobar"}"#, Nothing),
        // ---- -32602 Invalid params, each way
        ("checkType unknown value", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":{"checkType":"slow"},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("checkType wrong type", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":{"checkType":1},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("checkType null", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":{"checkType":null},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("checkType case", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":{"checkType":"Quick"},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("extra field", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":{"checkType":"full","x":1},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("positional too many", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":["quick","full"],"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("positional wrong type", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":[1],"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("errorType missing, no params", Refusing, r#"{"jsonrpc":"2.0","method":"recoverSystem","id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("errorType missing, {}", Refusing, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":{},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("errorType missing, []", Refusing, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":[],"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("errorType unknown", Allowing, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":{"errorType":"disk"},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("errorType extra", Allowing, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":{"errorType":"gpu","force":true},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator missing reserved", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":0,"allocated":1},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator negative", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":-1,"allocated":1,"reserved":2},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator fractional", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":0,"allocated":1.5,"reserved":2},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator string", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":"0","allocated":1,"reserved":2},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator device > u32", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":4294967296,"allocated":1,"reserved":2},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator pid 0", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":0,"allocated":1,"reserved":2,"pid":0},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator pid > i32", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":0,"allocated":1,"reserved":2,"pid":2147483648},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator pid null", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":0,"allocated":1,"reserved":2,"pid":null},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator extra", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":0,"allocated":1,"reserved":2,"gpu":0},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator 5 positional", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":[0,1,2,3,4],"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("allocator huge", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":[0,1e30,2],"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("initialize no version", Refusing, r#"{"jsonrpc":"2.0","method":"initialize","params":{},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("tools/call unknown tool", Refusing, r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"rm_rf"},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("tools/call no name", Refusing, r#"{"jsonrpc":"2.0","method":"tools/call","params":{},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("tools/call no params", Refusing, r#"{"jsonrpc":"2.0","method":"tools/call","id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("tools/call args array", Refusing, r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"getSystemHealth","arguments":["full"]},"id":1}"#, Err(INVALID_PARAMS, json!(1))),
        ("invalid params, notification", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":{"checkType":"slow"}}"#, Nothing),
        // ---- -32603 Internal error
        ("backend internal error", Failing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":7}"#, Err(INTERNAL_ERROR, json!(7))),
        ("backend panics", Panicking, r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":7}"#, Err(INTERNAL_ERROR, json!(7))),
        ("sync backend panics", Panicking, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":[0,1,2],"id":7}"#, Err(INTERNAL_ERROR, json!(7))),
        ("backend reserved code", ReservedCode, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":["gpu"],"id":7}"#, Err(INTERNAL_ERROR, json!(7))),
        ("internal error, notification", Failing, r#"{"jsonrpc":"2.0","method":"getSystemHealth"}"#, Nothing),
        // ---- server errors
        ("not authorized", Refusing, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":{"errorType":"memory"},"id":8}"#, Err(NOT_AUTHORIZED, json!(8))),
        ("backend server error", ServerError, r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":8}"#, Err(-32050, json!(8))),
        // ---- successes
        ("ping", Refusing, r#"{"jsonrpc":"2.0","method":"ping","id":1}"#, Ok(json!(1))),
        ("health, no params", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":1}"#, Ok(json!(1))),
        ("health, []", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":[],"id":1}"#, Ok(json!(1))),
        ("health, {}", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":{},"id":1}"#, Ok(json!(1))),
        ("extra top-level member ignored", Refusing, r#"{"jsonrpc":"2.0","method":"ping","id":1,"x":2}"#, Ok(json!(1))),
        ("recover allowed", Allowing, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":["process"],"id":1}"#, Ok(json!(1))),
        ("allocator, integral float", Allowing, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":1.0,"allocated":0,"reserved":18446744073709551615,"pid":42},"id":1}"#, Ok(json!(1))),
        ("health notification", Refusing, r#"{"jsonrpc":"2.0","method":"getSystemHealth"}"#, Nothing),
        // MCP 2025-11-25: arguments the tool's input schema refuses are a result with isError.
        ("tools/call bad args", Allowing, r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"recoverSystem","arguments":{"errorType":"cpu"}},"id":1}"#, Ok(json!(1))),
    ]
}

#[tokio::test]
async fn conformance_table_covers_every_code() {
    let mut failures = Vec::new();
    for (name, backend, request, expect) in conformance_rows() {
        let fake = backend.make();
        let response = call(&fake, request).await;
        assert_valid_reply(&response);
        let ok = match (&expect, &response) {
            (Expect::Nothing, None) => true,
            (Expect::Ok(id), Some(r)) => r.get("result").is_some() && &r["id"] == id,
            (Expect::Err(c, id), Some(r)) => r["error"]["code"] == json!(c) && &r["id"] == id,
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: expected {expect:?}, got {response:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn error_messages_use_the_spec_wording() {
    let fake = Fake::default();
    let cases = [
        ("{", MSG_PARSE_ERROR),
        ("1", MSG_INVALID_REQUEST),
        (r#"{"jsonrpc":"2.0","method":"nope","id":1}"#, MSG_METHOD_NOT_FOUND),
        (r#"{"jsonrpc":"2.0","method":"recoverSystem","id":1}"#, MSG_INVALID_PARAMS),
    ];
    for (request, prefix) in cases {
        let response = call(&fake, request).await.unwrap();
        assert!(message(&response).starts_with(prefix), "{response}");
    }
    let response =
        call(&Fake::failing(MethodError::internal("x")), r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":1}"#)
            .await
            .unwrap();
    assert!(message(&response).starts_with(MSG_INTERNAL_ERROR), "{response}");
    let response = call(&fake, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":["gpu"],"id":1}"#).await.unwrap();
    assert_eq!(message(&response), "recoverSystem refused: not authorized");
    let response =
        call(&fake, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":{"errorType":"x"},"id":1}"#).await.unwrap();
    assert_eq!(message(&response), r#"Invalid params: errorType must be one of "memory", "gpu", "process""#);
}

#[tokio::test]
async fn backend_error_data_passes_through_and_reserved_codes_are_masked() {
    let error = MethodError::server(-32042, "GPU 3 is resetting").with_data(json!({ "gpu": 3 }));
    let response = call(&Fake::failing(error), r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":1}"#).await.unwrap();
    assert_eq!(response["error"], json!({ "code": -32042, "message": "GPU 3 is resetting", "data": { "gpu": 3 } }));

    // An application code outside the reserved range passes through.
    let error = MethodError::new(42, "app error");
    let response = call(&Fake::failing(error), r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":1}"#).await.unwrap();
    assert_eq!(code(&response), 42);

    // `server()` keeps to its range.
    assert_eq!(MethodError::server(-31000, "x").code, INTERNAL_ERROR);
    assert_eq!(MethodError::server(SERVER_ERROR_MIN, "x").code, SERVER_ERROR_MIN);

    let error = MethodError::new(METHOD_NOT_FOUND, "pretend");
    let response = call(&Fake::failing(error), r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":1}"#).await.unwrap();
    assert_eq!(code(&response), INTERNAL_ERROR);
    assert_eq!(response["error"]["data"]["code"], json!(METHOD_NOT_FOUND));
}

// ---------------------------------------------------------------- jsonrpc.org section 7

/// The spec's examples. Its `subtract` / `sum` / `update` are methods this server does not have,
/// so the successful calls use `getSystemHealth` with the same params shapes; every error
/// example is sent verbatim.
#[tokio::test]
async fn spec_section_7_examples() {
    let fake = Fake::default();

    // rpc call with positional parameters
    let response = call(&fake, r#"{"jsonrpc": "2.0", "method": "getSystemHealth", "params": ["full"], "id": 1}"#).await;
    assert_eq!(
        response,
        Some(json!({ "jsonrpc": "2.0", "result": { "status": "healthy", "checkType": "full" }, "id": 1 }))
    );

    // rpc call with named parameters
    let response =
        call(&fake, r#"{"jsonrpc": "2.0", "method": "getSystemHealth", "params": {"checkType": "full"}, "id": 3}"#)
            .await;
    assert_eq!(
        response,
        Some(json!({ "jsonrpc": "2.0", "result": { "status": "healthy", "checkType": "full" }, "id": 3 }))
    );

    // a Notification (run, not answered)
    let before = fake.calls().len();
    assert_eq!(call(&fake, r#"{"jsonrpc": "2.0", "method": "getSystemHealth", "params": ["quick"]}"#).await, None);
    assert_eq!(fake.calls().len(), before + 1);
    assert_eq!(call(&fake, r#"{"jsonrpc": "2.0", "method": "foobar"}"#).await, None);

    // rpc call of non-existent method
    let response = call(&fake, r#"{"jsonrpc": "2.0", "method": "foobar", "id": "1"}"#).await.unwrap();
    assert_eq!(response["error"]["code"], json!(-32601));
    assert_eq!(response["error"]["message"], json!("Method not found"));
    assert_eq!(response["id"], json!("1"));

    // rpc call with invalid JSON
    let response = call(&fake, r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#).await.unwrap();
    assert_eq!((code(&response), &response["id"]), (-32700, &Value::Null));

    // rpc call with invalid Request object
    let response = call(&fake, r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#).await.unwrap();
    assert_eq!((code(&response), &response["id"]), (-32600, &Value::Null));

    // rpc call Batch, invalid JSON
    let response = call(
        &fake,
        r#"[
  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
  {"jsonrpc": "2.0", "method"
]"#,
    )
    .await
    .unwrap();
    assert_eq!((code(&response), &response["id"]), (-32700, &Value::Null));

    // rpc call with an empty Array: one error object, not an array
    let response = call(&fake, "[]").await.unwrap();
    assert_eq!((code(&response), &response["id"]), (-32600, &Value::Null));

    // rpc call with an invalid Batch (but not empty)
    let response = call(&fake, "[1]").await.unwrap();
    let responses = response.as_array().unwrap();
    assert_eq!(responses.len(), 1);
    assert_eq!((code(&responses[0]), &responses[0]["id"]), (-32600, &Value::Null));

    // rpc call with invalid Batch
    let response = call(&fake, "[1,2,3]").await.unwrap();
    let responses = response.as_array().unwrap();
    assert_eq!(responses.len(), 3);
    for response in responses {
        assert_eq!((code(response), &response["id"]), (-32600, &Value::Null));
    }

    // rpc call Batch: results in request order, notifications left out
    let response = call(
        &fake,
        r#"[
        {"jsonrpc": "2.0", "method": "getSystemHealth", "params": ["quick"], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "getSystemHealth", "params": {"checkType": "full"}, "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "ping", "id": "9"}
    ]"#,
    )
    .await
    .unwrap();
    let responses = response.as_array().unwrap();
    assert_eq!(responses.len(), 5);
    assert_eq!(
        responses[0],
        json!({ "jsonrpc": "2.0", "result": { "status": "healthy", "checkType": "quick" }, "id": "1" })
    );
    assert_eq!(
        responses[1],
        json!({ "jsonrpc": "2.0", "result": { "status": "healthy", "checkType": "full" }, "id": "2" })
    );
    assert_eq!((code(&responses[2]), &responses[2]["id"]), (-32600, &Value::Null));
    assert_eq!((code(&responses[3]), &responses[3]["id"]), (-32601, &json!("5")));
    assert_eq!(responses[4], json!({ "jsonrpc": "2.0", "result": {}, "id": "9" }));

    // rpc call Batch (all notifications): nothing at all
    let response = call(
        &fake,
        r#"[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]"#,
    )
    .await;
    assert_eq!(response, None);
}

#[tokio::test]
async fn batch_elements_are_each_validated() {
    let fake = Fake::default();
    // A nested batch is not a Request object; a notification among errors stays silent.
    let response = call(
        &fake,
        r#"[[{"jsonrpc":"2.0","method":"ping","id":1}], {"jsonrpc":"2.0","method":"ping"}, {"jsonrpc":"2.0","method":"ping","id":{}}]"#,
    )
    .await
    .unwrap();
    let responses = response.as_array().unwrap();
    assert_eq!(responses.len(), 2);
    for response in responses {
        assert_eq!((code(response), &response["id"]), (INVALID_REQUEST, &Value::Null));
    }
}

// ---------------------------------------------------------------- ids

#[tokio::test]
async fn ids_are_echoed_exactly() {
    let fake = Fake::default();
    let ids = [
        r#""abc""#,
        r#""""#,
        r#""ünïcödé 😀 \u0000 \n""#,
        "0",
        "-1",
        "42",
        "1.5",
        "-0.25",
        "1e300",
        "18446744073709551615",
        "-9223372036854775808",
        "null",
    ];
    for id_text in ids {
        let id: Value = serde_json::from_str(id_text).unwrap();
        for method in ["ping", "nope"] {
            let request = format!(r#"{{"jsonrpc":"2.0","method":"{method}","id":{id_text}}}"#);
            let response = call(&fake, &request).await.unwrap();
            assert_eq!(response["id"], id, "{request} -> {response}");
            // Same JSON text too, not only an equal value.
            let echoed = serde_json::to_string(&response["id"]).unwrap();
            assert_eq!(echoed, serde_json::to_string(&id).unwrap());
        }
    }
    let long_id = "x".repeat(100_000);
    let request = json!({ "jsonrpc": "2.0", "method": "ping", "id": long_id }).to_string();
    assert_eq!(call(&fake, &request).await.unwrap()["id"], json!(long_id));

    // `"id": null` is a request (answered), not a notification.
    let response = call(&fake, r#"{"jsonrpc":"2.0","method":"ping","id":null}"#).await;
    assert_eq!(response, Some(json!({ "jsonrpc": "2.0", "result": {}, "id": null })));
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn message_size_limit() {
    let fake = Fake::default();
    let request = r#"{"jsonrpc":"2.0","method":"ping","id":1}"#;
    let exact = RpcLimits { max_message_bytes: request.len(), ..RpcLimits::default() };
    let response = handle_json_rpc(request, &fake, &exact).await.unwrap();
    assert_eq!(response["result"], json!({}));

    let under = RpcLimits { max_message_bytes: request.len() - 1, ..RpcLimits::default() };
    let response = handle_json_rpc(request, &fake, &under).await.unwrap();
    assert_eq!((code(&response), &response["id"]), (INVALID_REQUEST, &Value::Null));
    assert!(message(&response).contains(&format!("{}-byte limit", request.len() - 1)), "{response}");

    // The default: 1 MiB.
    assert_eq!(RpcLimits::default().max_message_bytes, 1_048_576);
    let big = format!(r#"{{"jsonrpc":"2.0","method":"ping","id":"{}"}}"#, "x".repeat(1 << 20));
    let response = call(&fake, &big).await.unwrap();
    assert_eq!(code(&response), INVALID_REQUEST);
    assert!(message(&response).contains("1048576-byte limit"), "{response}");
    // Over the limit even when it is not JSON: the limit comes before parsing.
    let response = call(&fake, &"{".repeat((1 << 20) + 1)).await.unwrap();
    assert_eq!(code(&response), INVALID_REQUEST);

    // An already-parsed message is held to the limit by its compact JSON size.
    let value: Value = serde_json::from_str(request).unwrap();
    let response = handle_json_rpc_value(value.clone(), &fake, &exact).await.unwrap();
    assert_eq!(response["result"], json!({}));
    let response = handle_json_rpc_value(value, &fake, &under).await.unwrap();
    assert_eq!(code(&response), INVALID_REQUEST);
    assert!(message(&response).contains("byte limit"), "{response}");
}

#[tokio::test]
async fn batch_size_limit() {
    let fake = Fake::default();
    let batch = |n: usize| {
        let requests: Vec<Value> = (0..n).map(|i| json!({ "jsonrpc": "2.0", "method": "ping", "id": i })).collect();
        Value::Array(requests).to_string()
    };
    let response = call(&fake, &batch(100)).await.unwrap();
    let responses = response.as_array().unwrap();
    assert_eq!(responses.len(), 100);
    // In request order.
    assert!(responses.iter().enumerate().all(|(i, r)| r["id"] == json!(i)));

    let response = call(&fake, &batch(101)).await.unwrap();
    assert_eq!((code(&response), &response["id"]), (INVALID_REQUEST, &Value::Null));
    assert!(message(&response).contains("100-request limit"), "{response}");

    let small = RpcLimits { max_batch: 2, ..RpcLimits::default() };
    assert!(handle_json_rpc(&batch(2), &fake, &small).await.unwrap().is_array());
    let response = handle_json_rpc(&batch(3), &fake, &small).await.unwrap();
    assert_eq!(code(&response), INVALID_REQUEST);
    // No element of a rejected batch ran.
    let value: Value = serde_json::from_str(&batch(3)).unwrap();
    let response = handle_json_rpc_value(value, &fake, &small).await.unwrap();
    assert_eq!(code(&response), INVALID_REQUEST);
}

// ---------------------------------------------------------------- authorization

#[tokio::test]
async fn recovery_is_refused_by_default() {
    let backend = DefaultAuth::default();
    let response = call(&backend, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":{"errorType":"gpu"},"id":1}"#)
        .await
        .unwrap();
    assert_eq!(code(&response), NOT_AUTHORIZED);
    assert_eq!(message(&response), format!("recoverSystem {MSG_NOT_AUTHORIZED}"));
    assert!(!*backend.recovered.lock().unwrap(), "recover_system ran without authorization");

    // As a notification it is refused silently, and still not run.
    assert_eq!(call(&backend, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":["gpu"]}"#).await, None);
    assert!(!*backend.recovered.lock().unwrap());
}

#[tokio::test]
async fn recovery_runs_when_authorized_and_authorize_sees_params_by_name() {
    let fake = Fake::allowing();
    let response =
        call(&fake, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":["memory"],"id":1}"#).await.unwrap();
    assert_eq!(response["result"], json!({ "recovered": true, "errorType": "memory" }));
    assert_eq!(
        fake.calls(),
        vec![r#"authorize:recoverSystem:{"errorType":"memory"}"#.to_string(), "recoverSystem:memory".to_string()]
    );

    // Refused: authorize is asked, recover_system is not called.
    let fake = Fake::default();
    call(&fake, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":{"errorType":"process"},"id":1}"#).await;
    assert_eq!(fake.calls(), vec![r#"authorize:recoverSystem:{"errorType":"process"}"#.to_string()]);

    // Invalid params are rejected before authorize is asked.
    let fake = Fake::allowing();
    call(&fake, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":{"errorType":"nope"},"id":1}"#).await;
    assert!(fake.calls().is_empty());

    // Reading health does not ask.
    let fake = Fake::default();
    call(&fake, r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":1}"#).await;
    assert!(fake.calls().iter().all(|c| !c.starts_with("authorize")), "{:?}", fake.calls());
}

#[test]
fn the_control_tools_are_the_ones_that_change_the_service() {
    let control: Vec<&str> = Tool::ALL.into_iter().filter(|t| t.is_control()).map(Tool::name).collect();
    assert_eq!(control, ["recoverSystem", "reportAllocatorStats"]);
    assert!(!Tool::GetSystemHealth.is_control());
}

#[tokio::test]
async fn allocator_reports_need_authorization() {
    // Refused: -32001 naming the method, and the report is never recorded.
    let fake = Fake::default();
    let request = r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":0,"allocated":0,"reserved":79000000000},"id":1}"#;
    let response = call(&fake, request).await.unwrap();
    assert_eq!(code(&response), NOT_AUTHORIZED);
    assert_eq!(message(&response), "reportAllocatorStats refused: not authorized");
    assert_eq!(fake.calls(), [r#"authorize:reportAllocatorStats:{"allocated":0,"device":0,"reserved":79000000000}"#]);

    // Through MCP too: a tool result with isError, the report not recorded.
    let fake = Fake::default();
    let arguments = json!({ "device": 0, "allocated": 0, "reserved": 79_000_000_000u64, "pid": 7 });
    let response = call(&fake, &mcp("tools/call", json!({ "name": "reportAllocatorStats", "arguments": arguments })))
        .await
        .unwrap();
    assert_eq!(response["result"]["isError"], json!(true));
    assert_eq!(response["result"]["structuredContent"]["error"]["code"], json!(NOT_AUTHORIZED));
    assert_eq!(fake.calls().len(), 1, "{:?}", fake.calls());
    assert!(fake.calls()[0].contains(r#""pid":7"#), "authorize sees the pid: {:?}", fake.calls());

    // Allowed: authorize, then the report.
    let fake = Fake::allowing();
    let response = call(&fake, request).await.unwrap();
    assert_eq!(response["result"]["accepted"], json!(true));
    assert_eq!(fake.calls().len(), 2);
    assert!(fake.calls()[1].starts_with("reportAllocatorStats:"));

    // Invalid params are answered -32602 before authorize is asked.
    let fake = Fake::default();
    let response =
        call(&fake, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":[0,1],"id":1}"#).await.unwrap();
    assert_eq!(code(&response), INVALID_PARAMS);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn a_backend_that_refuses_the_params_answers_invalid_params() {
    // e.g. an allocator report for a device the monitor does not know, or allocated > reserved.
    let refusal = MethodError::invalid_params("device must be an integer in [0, 1], got 7");
    let fake = Fake::failing(refusal.clone());
    let response =
        call(&fake, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":[7,1,2],"id":1}"#).await.unwrap();
    assert_eq!(response["error"], refusal.to_json(), "not -32603 'reserved code'");
    // The async tools alike.
    for request in [
        r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":1}"#,
        r#"{"jsonrpc":"2.0","method":"recoverSystem","params":["gpu"],"id":1}"#,
    ] {
        let response = call(&fake, request).await.unwrap();
        assert_eq!(code(&response), INVALID_PARAMS, "{request}");
    }
    // Over MCP (2025-11-25) arguments the tool refuses are a tool result with isError, which
    // a model can read and correct, not a protocol error.
    let arguments = json!({ "device": 7, "allocated": 1, "reserved": 2 });
    let response = call(&fake, &mcp("tools/call", json!({ "name": "reportAllocatorStats", "arguments": arguments })))
        .await
        .unwrap();
    assert!(response.get("error").is_none(), "{response}");
    assert_eq!(response["result"]["isError"], json!(true));
    assert_eq!(response["result"]["content"][0]["text"], json!(refusal.message));
    assert_eq!(response["result"]["structuredContent"]["error"], refusal.to_json());
}

#[tokio::test]
async fn an_authorize_that_never_settles_is_refused_after_the_timeout() {
    let limits = RpcLimits { authorize_timeout: std::time::Duration::from_millis(50), ..RpcLimits::default() };
    for (method, params) in [("recoverSystem", json!(["gpu"])), ("reportAllocatorStats", json!([0, 1, 2]))] {
        let fake = Fake { authorize_hangs: true, allow: true, ..Fake::default() };
        let request = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 1 }).to_string();
        let answered =
            tokio::time::timeout(std::time::Duration::from_secs(10), handle_json_rpc(&request, &fake, &limits));
        let response = answered.await.expect("the call settles").unwrap();
        assert_eq!(code(&response), NOT_AUTHORIZED);
        assert_eq!(message(&response), format!("{method} refused: authorize did not answer within 50 ms"));
        assert_eq!(fake.calls().len(), 1, "only authorize was called: {:?}", fake.calls());
    }
    assert_eq!(RpcLimits::default().authorize_timeout, std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn params_are_parsed_into_typed_values() {
    let fake = Fake::allowing();
    call(&fake, r#"{"jsonrpc":"2.0","method":"getSystemHealth","id":1}"#).await;
    call(&fake, r#"{"jsonrpc":"2.0","method":"getSystemHealth","params":{"checkType":"full"},"id":1}"#).await;
    call(&fake, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":{"device":2,"allocated":10,"reserved":20,"pid":7},"id":1}"#).await;
    call(&fake, r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":[3,1e3,4096],"id":1}"#).await;
    assert_eq!(
        fake.calls(),
        vec![
            "getSystemHealth:quick".to_string(),
            "getSystemHealth:full".to_string(),
            r#"authorize:reportAllocatorStats:{"allocated":10,"device":2,"pid":7,"reserved":20}"#.to_string(),
            format!(
                "reportAllocatorStats:{:?}",
                AllocatorStatsParams { device: 2, allocated: 10, reserved: 20, pid: Some(7) }
            ),
            r#"authorize:reportAllocatorStats:{"allocated":1000,"device":3,"reserved":4096}"#.to_string(),
            format!(
                "reportAllocatorStats:{:?}",
                AllocatorStatsParams { device: 3, allocated: 1000, reserved: 4096, pid: None }
            ),
        ]
    );
}

// ---------------------------------------------------------------- tools as data

#[test]
fn monitoring_tools_is_the_requirements_object_verbatim() {
    // The requirements' JS object, as JSON.
    let expected: Value = serde_json::from_str(
        r#"{
          "getSystemHealth": { "description": "Get comprehensive system health status",
            "inputSchema": { "type": "object", "properties": { "checkType": { "type": "string", "enum": ["quick", "full"] } } } },
          "recoverSystem": { "description": "Trigger system recovery",
            "inputSchema": { "type": "object", "properties": { "errorType": { "type": "string", "enum": ["memory", "gpu", "process"] } }, "required": ["errorType"] } }
        }"#,
    )
    .unwrap();
    assert_eq!(monitoring_tools(), expected);
    assert!(monitoring_tools().get("reportAllocatorStats").is_none());

    let allocator = allocator_tool();
    assert!(allocator["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(allocator["inputSchema"]["required"], json!(["device", "allocated", "reserved"]));
    assert_eq!(allocator["inputSchema"]["properties"]["pid"]["minimum"], json!(1));
    assert_eq!(allocator.as_object().unwrap().len(), 2);
}

#[test]
fn schema_enums_match_the_typed_enums() {
    let tools = monitoring_tools();
    let check: Vec<&str> = CheckType::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(tools["getSystemHealth"]["inputSchema"]["properties"]["checkType"]["enum"], json!(check));
    let recovery: Vec<&str> = RecoveryType::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(tools["recoverSystem"]["inputSchema"]["properties"]["errorType"]["enum"], json!(recovery));
}

// ---------------------------------------------------------------- MCP

fn mcp(method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string()
}

#[tokio::test]
async fn mcp_initialize_negotiates_the_version() {
    let fake = Fake::default();
    let limits = RpcLimits {
        server_info: ServerInfo { name: "hpc-health".into(), version: "9.9.9".into() },
        ..RpcLimits::default()
    };
    let params = |version: &str| json!({ "protocolVersion": version, "capabilities": {}, "clientInfo": { "name": "agent", "version": "1" } });
    let response = handle_json_rpc(&mcp("initialize", params("2025-11-25")), &fake, &limits).await.unwrap();
    assert_eq!(
        response["result"],
        json!({
            "protocolVersion": "2025-11-25",
            "capabilities": { "tools": { "listChanged": false } },
            "serverInfo": { "name": "hpc-health", "version": "9.9.9" }
        })
    );
    assert_eq!(PROTOCOL_VERSION, "2025-11-25");
    // Older clients get their own revision back.
    assert_eq!(SUPPORTED_PROTOCOL_VERSIONS.as_slice(), ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]);
    for version in SUPPORTED_PROTOCOL_VERSIONS {
        let response = handle_json_rpc(&mcp("initialize", params(version)), &fake, &limits).await.unwrap();
        assert_eq!(response["result"]["protocolVersion"], json!(version));
    }
    // One we do not know (newer, or older than any we support): ours, the client decides.
    for version in ["2099-01-01", "2024-10-07"] {
        let response = handle_json_rpc(&mcp("initialize", params(version)), &fake, &limits).await.unwrap();
        assert_eq!(response["result"]["protocolVersion"], json!(PROTOCOL_VERSION));
    }

    // The default server info is this crate's.
    let response = call(&fake, &mcp("initialize", params("2025-06-18"))).await.unwrap();
    assert_eq!(response["result"]["serverInfo"]["version"], json!(env!("CARGO_PKG_VERSION")));

    // notifications/initialized: no response.
    assert_eq!(call(&fake, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await, None);
    // ping: an empty result.
    let response = call(&fake, r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#).await;
    assert_eq!(response, Some(json!({ "jsonrpc": "2.0", "id": "p", "result": {} })));
}

#[tokio::test]
async fn mcp_tools_list() {
    let response = call(&Fake::default(), &mcp("tools/list", json!({}))).await.unwrap();
    let tools = response["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["getSystemHealth", "recoverSystem", "reportAllocatorStats"]);
    let requirements = monitoring_tools();
    for tool in &tools[..2] {
        let name = tool["name"].as_str().unwrap();
        assert_eq!(tool["description"], requirements[name]["description"]);
        assert_eq!(tool["inputSchema"], requirements[name]["inputSchema"]);
    }
    assert_eq!(tools[2]["inputSchema"], allocator_tool()["inputSchema"]);
    // Annotations: a host may run the read-only tool without asking, and should ask before the
    // destructive one.
    assert_eq!(tools[0]["annotations"]["readOnlyHint"], json!(true));
    assert_eq!(tools[1]["annotations"]["readOnlyHint"], json!(false));
    assert_eq!(tools[1]["annotations"]["destructiveHint"], json!(true));
    assert_eq!(tools[2]["annotations"]["readOnlyHint"], json!(false));
    assert_eq!(tools[2]["annotations"]["destructiveHint"], json!(false));
    // getSystemHealth's outputSchema names every field of the report; the others have none.
    let schema = &tools[0]["outputSchema"];
    assert_eq!(schema["type"], json!("object"));
    let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(
        required,
        ["healthy", "check_type", "timestamp", "duration_ms", "memory", "gpu", "issues", "accepting_requests"]
    );
    assert!(tools[1].get("outputSchema").is_none() && tools[2].get("outputSchema").is_none());
    let keys = |tool: &Value| tool.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&tools[0]), ["annotations", "description", "inputSchema", "name", "outputSchema"]);
    assert_eq!(keys(&tools[1]), ["annotations", "description", "inputSchema", "name"]);
    // Without params, or with a cursor, the same.
    let response = call(&Fake::default(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await.unwrap();
    assert_eq!(response["result"]["tools"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn mcp_tools_call_success() {
    let fake = Fake::default();
    let response =
        call(&fake, &mcp("tools/call", json!({ "name": "getSystemHealth", "arguments": { "checkType": "full" } })))
            .await
            .unwrap();
    let result = &response["result"];
    let expected = json!({ "status": "healthy", "checkType": "full" });
    assert_eq!(result["isError"], json!(false));
    assert_eq!(result["structuredContent"], expected);
    assert_eq!(result["content"][0]["type"], json!("text"));
    let text = result["content"][0]["text"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), expected);

    // No arguments: the defaults.
    let response = call(&fake, &mcp("tools/call", json!({ "name": "getSystemHealth" }))).await.unwrap();
    assert_eq!(response["result"]["structuredContent"]["checkType"], json!("quick"));
    let response =
        call(&fake, &mcp("tools/call", json!({ "name": "getSystemHealth", "arguments": null }))).await.unwrap();
    assert_eq!(response["result"]["isError"], json!(false));

    // A non-object result is wrapped for structuredContent, and is the text as is.
    let fake = Fake { allocator_result: Some(json!(true)), ..Fake::allowing() };
    let arguments = json!({ "device": 0, "allocated": 1, "reserved": 2 });
    let response = call(&fake, &mcp("tools/call", json!({ "name": "reportAllocatorStats", "arguments": arguments })))
        .await
        .unwrap();
    assert_eq!(response["result"]["structuredContent"], json!({ "result": true }));
    assert_eq!(response["result"]["content"][0]["text"], json!("true"));

    // recoverSystem through MCP goes through authorize with the same method name and arguments.
    let fake = Fake::allowing();
    let response =
        call(&fake, &mcp("tools/call", json!({ "name": "recoverSystem", "arguments": { "errorType": "gpu" } })))
            .await
            .unwrap();
    assert_eq!(response["result"]["structuredContent"], json!({ "recovered": true, "errorType": "gpu" }));
    assert_eq!(fake.calls()[0], r#"authorize:recoverSystem:{"errorType":"gpu"}"#);
}

#[tokio::test]
async fn mcp_tool_failures_are_results_with_is_error() {
    let request = mcp("tools/call", json!({ "name": "getSystemHealth" }));
    let response = call(&Fake::failing(MethodError::internal("NVML is gone")), &request).await.unwrap();
    let result = &response["result"];
    assert!(response.get("error").is_none(), "{response}");
    assert_eq!(result["isError"], json!(true));
    assert_eq!(result["content"][0], json!({ "type": "text", "text": "Internal error: NVML is gone" }));
    // getSystemHealth's structuredContent must match its outputSchema: the error is text only.
    assert!(result.get("structuredContent").is_none(), "{result}");

    // A panicking backend too.
    let response = call(&Fake::panicking(), &request).await.unwrap();
    assert_eq!(response["result"]["isError"], json!(true));

    // Refused authorization.
    let request = mcp("tools/call", json!({ "name": "recoverSystem", "arguments": { "errorType": "memory" } }));
    let response = call(&Fake::default(), &request).await.unwrap();
    assert_eq!(response["result"]["isError"], json!(true));
    assert_eq!(response["result"]["content"][0]["text"], json!("recoverSystem refused: not authorized"));
    assert_eq!(response["result"]["structuredContent"]["error"]["code"], json!(NOT_AUTHORIZED));
}

#[tokio::test]
async fn mcp_unknown_tool_and_malformed_calls_are_protocol_errors() {
    let fake = Fake::allowing();
    let response =
        call(&fake, &mcp("tools/call", json!({ "name": "invalid_tool_name", "arguments": {} }))).await.unwrap();
    assert_eq!(code(&response), INVALID_PARAMS);
    assert_eq!(message(&response), r#"Unknown tool: "invalid_tool_name""#);
    // MCP protocol methods are not tools.
    let response = call(&fake, &mcp("tools/call", json!({ "name": "ping" }))).await.unwrap();
    assert_eq!(code(&response), INVALID_PARAMS);
    // A call that is not a CallToolRequest: no name, arguments not an object.
    for params in [json!({}), json!({ "name": "getSystemHealth", "arguments": [] })] {
        let response = call(&fake, &mcp("tools/call", params.clone())).await.unwrap();
        assert_eq!(code(&response), INVALID_PARAMS, "{params}");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn mcp_input_validation_errors_are_tool_results_with_is_error() {
    // MCP 2025-11-25: arguments the input schema does not allow are a tool execution error.
    let fake = Fake::allowing();
    let cases = [
        (json!({ "name": "recoverSystem", "arguments": {} }), "Invalid params: errorType is required"),
        (json!({ "name": "recoverSystem", "arguments": { "errorType": "disk" } }), "errorType must be one of"),
        (json!({ "name": "getSystemHealth", "arguments": { "checkType": 1 } }), "checkType must be one of"),
        (json!({ "name": "getSystemHealth", "arguments": { "extra": true } }), "unknown field \"extra\""),
        (json!({ "name": "reportAllocatorStats", "arguments": { "device": -1 } }), "device must be an integer"),
    ];
    for (params, text) in cases {
        let response = call(&fake, &mcp("tools/call", params.clone())).await.unwrap();
        assert!(response.get("error").is_none(), "{params}: {response}");
        let result = &response["result"];
        assert_eq!(result["isError"], json!(true), "{params}");
        let message = result["content"][0]["text"].as_str().unwrap();
        assert!(message.contains(text), "{params}: {message}");
        // getSystemHealth has an outputSchema, which an error object would not match.
        let tool = params["name"].as_str().unwrap();
        if tool == "getSystemHealth" {
            assert!(result.get("structuredContent").is_none(), "{result}");
        } else {
            assert_eq!(result["structuredContent"]["error"]["code"], json!(INVALID_PARAMS), "{result}");
        }
    }
    // Invalid arguments are refused before authorize is asked or the backend runs.
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    // Called as a method, the same input is still -32602.
    let response = call(&fake, r#"{"jsonrpc":"2.0","method":"recoverSystem","params":{},"id":1}"#).await.unwrap();
    assert_eq!(code(&response), INVALID_PARAMS);
}

// ---------------------------------------------------------------- hostile input

#[tokio::test]
async fn hostile_input_does_not_panic() {
    let fake = Fake::allowing();
    let mut cases: Vec<String> = vec![
        "[".repeat(100_000),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("{}1{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000)),
        format!(
            r#"{{"jsonrpc":"2.0","method":"getSystemHealth","params":{{"checkType":{}"quick"{}}},"id":1}}"#,
            "[".repeat(120),
            "]".repeat(120)
        ),
        format!("[{}]", r#"{"jsonrpc":"2.0","method":"ping","id":1},"#.repeat(5000) + "1"),
        format!(r#"{{"jsonrpc":"2.0","method":"{}","id":1}}"#, "m".repeat(900_000)),
        format!(r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"{}"}},"id":1}}"#, "é".repeat(400_000)),
        format!(r#"{{"jsonrpc":"2.0","method":"getSystemHealth","params":{{"{}":1}},"id":1}}"#, "k".repeat(900_000)),
        format!(
            r#"{{"jsonrpc":"2.0","method":"getSystemHealth","params":{{"checkType":"{}"}},"id":1}}"#,
            "q".repeat(900_000)
        ),
        r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":[1e308,-1e308,5e-324],"id":1}"#.into(),
        r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":[99999999999999999999999,1,2],"id":1}"#.into(),
        r#"{"jsonrpc":"2.0","method":"reportAllocatorStats","params":[-0,-0.0,0.0],"id":-0}"#.into(),
        r#"{"jsonrpc":"2.0","method":"ping","id":123456789012345678901234567890}"#.into(),
        "\u{feff}{}".into(),
        "\0".into(),
        r#"{"jsonrpc":"2.0","method":"ping\u0000","id":"\u0000"}"#.into(),
        r#"{"jsonrpc":"2.0","jsonrpc":"1.0","method":"ping","id":1}"#.into(),
        "[[],[[]],{},null]".into(),
    ];
    cases.push(format!(
        "[{}]",
        vec![r#"{"jsonrpc":"2.0","method":"recoverSystem","params":["gpu"],"id":"r"}"#; 100].join(",")
    ));
    for case in &cases {
        let response = call(&fake, case).await;
        assert_valid_reply(&response);
        // Messages stay short whatever the input.
        if let Some(Value::Object(reply)) = &response {
            let text = Value::Object(reply.clone()).to_string();
            assert!(text.len() < 4096, "reply of {} bytes", text.len());
        }
    }
}

#[test]
fn dispatch_futures_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let fake = Fake::default();
    let limits = RpcLimits::default();
    assert_send(handle_json_rpc("", &fake, &limits));
    assert_send(handle_json_rpc_value(Value::Null, &fake, &limits));
}
