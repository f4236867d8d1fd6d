//! Writes the committed fuzz corpus, `fuzz/corpus/<target>/`, and the regression inputs,
//! `fuzz/regressions/<target>/`: the hand-made cases, then the smallest mutated input for
//! each distinct outcome the seeded mutations reached. Each file is named for the verdict it
//! gets as it is written (`ok-…` accepted, `bad-…` refused; see `tests/support/verdict.rs`),
//! and the `corpus_*` / `regression_*` tests in `tests/hostile_input.rs` replay them.
//!
//! Run it after changing a decoder on purpose, from the repository root:
//!
//! ```sh
//! cargo run --example write-corpus
//! git status fuzz/   # review what changed; remove files of outcomes that no longer occur
//! ```
//!
//! It adds and overwrites files and removes none. Seeded: the same code writes the same files.

use std::collections::BTreeMap;
use std::fs;

use hpc_health::durable::checkpoint::{decode_checkpoint, encode_checkpoint, CHECKPOINT_HEADER_BYTES};
use serde_json::{json, Value};

#[path = "../tests/support/mod.rs"]
mod support;

use support::corpus::{corpus_dir, regressions_dir};
use support::json_rpc::random_message;
use support::mutation::{mutate, nested_arrays};
use support::rng::Rng;
use support::samples::*;
use support::scratch::scratch_root;
use support::verdict;

/// A name for a class of outcome: the first words of a reason, lower case, joined by `-`,
/// without digits or quoted input (so that `unknown field \`sevxrity\`` and
/// `unknown field \`kimd\`` are one class).
fn slug(text: &str) -> String {
    let mut plain = String::new();
    let mut quote = None;
    for c in text.chars() {
        match (quote, c) {
            (None, '"' | '`') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, _) => plain.push(c),
            _ => {}
        }
    }
    let words: Vec<String> = plain
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty() && !["at", "line", "column", "bad", "skipped"].contains(w))
        .map(str::to_ascii_lowercase)
        .take(5)
        .collect();
    words.join("-")
}

fn main() {
    let root = scratch_root();
    let write = |target: &str, name: &str, bytes: &[u8], accepted: bool| {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        let name = format!("{}-{name}", if accepted { "ok" } else { "bad" });
        fs::write(dir.join(name), bytes).unwrap();
    };
    /// The smallest input per outcome class, at most `max` classes.
    fn smallest_per_class(found: &mut BTreeMap<String, Vec<u8>>, class: String, bytes: Vec<u8>) {
        match found.get(&class) {
            Some(kept) if kept.len() <= bytes.len() => {}
            _ => {
                found.insert(class, bytes);
            }
        }
    }

    // Regressions: named with the verdict they get, replayed by the `regression_*` tests.
    let regression = |target: &str, name: &str, bytes: &[u8]| {
        let dir = regressions_dir(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    };
    let seq = verdict::CHECKPOINT_SEQ;
    regression("checkpoint", "bad-sealed-lone-surrogate", &encode_checkpoint(seq, 0, b"{\"s\":\"\\ud800\"}"));
    regression("checkpoint", "bad-sealed-invalid-utf8-string", &encode_checkpoint(seq, 0, b"{\"s\":\"\xff\"}"));
    let max_line = |seq: u64| {
        format!("{{\"seq\":{seq},\"timestamp\":1,\"kind\":\"k\",\"severity\":\"info\",\"message\":\"m\",\"details\":null}}\n")
    };
    regression("incident_segment", "bad-seq-u64-max", max_line(u64::MAX).as_bytes());
    regression("incident_segment", "bad-seq-u64-max-minus-one", max_line(u64::MAX - 1).as_bytes());

    // Checkpoint.
    let payload = br#"{"a":1}"#;
    let (crc, len) = (crc32c::crc32c(payload), payload.len() as u64);
    let with_payload = |header: Vec<u8>| [header, payload.to_vec()].concat();
    let good = encode_checkpoint(seq, CKPT_TS, payload);
    let mut named: Vec<(&str, Vec<u8>)> = vec![
        ("small-object", good.clone()),
        ("empty-object", encode_checkpoint(seq, 0, b"{}")),
        ("number", encode_checkpoint(seq, 0, b"0")),
        ("unicode-string", encode_checkpoint(seq, 0, "\"\u{e9}\\u00e9\u{1F600}\"".as_bytes())),
        ("depth-100", encode_checkpoint(seq, 0, nested_arrays(100).as_bytes())),
        ("timestamp-u64-max", with_payload(sealed_header(1, 0, seq, u64::MAX, len, crc))),
        ("empty-file", Vec::new()),
        ("header-only-truncated", good[..CHECKPOINT_HEADER_BYTES - 1].to_vec()),
        ("payload-truncated", good[..good.len() - 1].to_vec()),
        ("bad-magic", [b"HPCCKPT\x02".to_vec(), good[8..].to_vec()].concat()),
        ("header-crc-flipped", {
            let mut b = good.clone();
            b[41] ^= 1;
            b
        }),
        ("version-2", with_payload(sealed_header(2, 0, seq, 0, len, crc))),
        ("flags-set", with_payload(sealed_header(1, 1, seq, 0, len, crc))),
        ("seq-mismatch", with_payload(sealed_header(1, 0, seq + 1, 0, len, crc))),
        ("length-u64-max", with_payload(sealed_header(1, 0, seq, 0, u64::MAX, crc))),
        ("length-u32-max-plus-one", with_payload(sealed_header(1, 0, seq, 0, u32::MAX as u64 + 1, crc))),
        ("length-plus-one", with_payload(sealed_header(1, 0, seq, 0, len + 1, crc))),
        ("length-zero", with_payload(sealed_header(1, 0, seq, 0, 0, crc))),
        ("payload-crc-mismatch", with_payload(sealed_header(1, 0, seq, 0, len, crc ^ 0x8000_0000))),
        ("payload-bit-flip", {
            let mut b = good.clone();
            *b.last_mut().unwrap() ^= 4;
            b
        }),
        ("extra-byte-appended", [good.clone(), b"\n".to_vec()].concat()),
        ("sealed-not-json", encode_checkpoint(seq, 0, b"{oops")),
        ("sealed-two-values", encode_checkpoint(seq, 0, b"{}{}")),
        ("sealed-empty-payload", encode_checkpoint(seq, 0, b"")),
        ("sealed-depth-101", encode_checkpoint(seq, 0, nested_arrays(101).as_bytes())),
        ("sealed-depth-2000-unclosed", encode_checkpoint(seq, 0, "[".repeat(2000).as_bytes())),
    ];
    let mut found = BTreeMap::new();
    let mut rng = Rng::new(0xC0_4B05);
    for i in 0..20_000 {
        let p = &checkpoint_payloads()[i % 4];
        let file = encode_checkpoint(seq, CKPT_TS, p);
        let (bytes, _) = mutate(&mut rng, &file, &[(12, 8, seq), (28, 8, p.len() as u64)]);
        if let Err(reason) = decode_checkpoint(&bytes, seq) {
            smallest_per_class(&mut found, slug(&reason), bytes);
        }
    }
    let found_names: Vec<String> = found.keys().map(|class| format!("found-{class}")).collect();
    named.extend(found_names.iter().map(String::as_str).zip(found.values().cloned()));
    for (name, bytes) in &named {
        write("checkpoint", name, bytes, verdict::checkpoint(bytes));
    }

    // Journal.
    let frame = |record: Value| journal_frame(&serde_json::to_vec(&record).unwrap());
    let raw = |len: u32, crc: u32, rest: &[u8]| [&len.to_le_bytes()[..], &crc.to_le_bytes(), rest].concat();
    let a = frame(begin("a", 1, json!({ "gpu": 0 })));
    let b = frame(begin("b", 2, json!(null)));
    let end_a = frame(end("a", 3));
    let three = [a.clone(), b.clone(), end_a.clone()].concat();
    let mut named: Vec<(String, Vec<u8>)> = [
        ("empty", Vec::new()),
        ("one-begin", a.clone()),
        ("begin-begin-end", three.clone()),
        ("unicode-id-and-details", frame(begin("é\u{1F600}\n", 4, json!({ "s": "\u{0}\"\\" })))),
        ("details-depth-98", frame(begin("deep", 5, serde_json::from_str(&nested_arrays(98)).unwrap()))),
        ("torn-header", [a.clone(), b[..5].to_vec()].concat()),
        ("torn-payload", [a.clone(), b[..b.len() - 1].to_vec()].concat()),
        ("length-zero", raw(0, 0, b"")),
        ("length-u32-max", raw(u32::MAX, 0, &a)),
        ("length-over-record-limit", raw((1 << 20) + 1, 0, b"{}")),
        ("frame-crc-flipped", {
            let mut x = a.clone();
            x[5] ^= 1;
            x
        }),
        ("payload-bit-flip-mid-file", {
            let mut x = three.clone();
            x[a.len() + 12] ^= 2;
            x
        }),
        ("garbage-then-intact-frames", [b"\xde\xad\xbe\xef\0\0\0\0".to_vec(), three.clone()].concat()),
        ("sealed-not-json", journal_frame(b"hello")),
        ("sealed-empty-object", journal_frame(b"{}")),
        ("sealed-unknown-op", journal_frame(br#"{"op":"restart","id":"a","ts":1}"#)),
        ("sealed-negative-ts", journal_frame(br#"{"op":"begin","id":"a","ts":-1,"details":null}"#)),
        (
            "sealed-details-depth-2000",
            journal_frame(format!(r#"{{"op":"begin","id":"a","ts":1,"details":{}}}"#, nested_arrays(2000)).as_bytes()),
        ),
        ("duplicate-begin", [a.clone(), a.clone()].concat()),
        ("end-of-unknown-operation", frame(end("nobody", 1))),
    ]
    .into_iter()
    .map(|(n, bytes)| (n.to_string(), bytes))
    .collect();
    let mut found = BTreeMap::new();
    let mut rng = Rng::new(0x0070_A1C0);
    let originals = journal_originals();
    for i in 0..600 {
        let original = &originals[i % 3];
        let (bytes, _) = mutate(&mut rng, &original.bytes, &original.length_fields);
        let problems = verdict::journal_problems(root.path(), i, &bytes);
        if let Some(first) = problems.first() {
            let kind = format!("{:?}", first.kind).to_ascii_lowercase();
            smallest_per_class(&mut found, format!("{kind}-{}", slug(&first.reason)), bytes);
        }
    }
    named.extend(found.into_iter().map(|(class, bytes)| (format!("found-{class}"), bytes)));
    for (i, (name, bytes)) in named.iter().enumerate() {
        write("journal", name, bytes, verdict::journal(root.path(), 10_000 + i, bytes));
    }

    // Incident segment.
    let line = |seq: u64, rest: &str| {
        format!("{{\"seq\":{seq},\"timestamp\":1700000000000,\"kind\":\"k\",\"severity\":\"warn\",\"message\":\"m\",\"details\":{rest}}}\n")
    };
    let good = line(1, "{\"gpu\":0}");
    let two = format!("{good}{}", line(2, "null"));
    let mut named: Vec<(String, Vec<u8>)> = [
        ("empty", String::new()),
        ("one-line", good.clone()),
        ("two-lines", two.clone()),
        ("crlf-line-ending", good.replace('\n', "\r\n")),
        ("unicode-message", line(1, "\"é\\u00e9\u{1F600}\\n\"")),
        ("seq-zero", line(0, "null")),
        ("seq-max-safe-integer", line((1 << 53) - 1, "null")),
        ("details-depth-99", line(1, &nested_arrays(99))),
        ("no-final-newline", good.trim_end().to_string()),
        ("torn-second-line", format!("{good}{}", &line(2, "null")[..30])),
        ("empty-line-mid-file", format!("{good}\n{}", line(2, "null"))),
        ("garbage-line-mid-file", format!("{good}garbage\n{}", line(2, "null"))),
        ("nul-bytes-line", format!("{good}\0\0\0\n{}", line(2, "null"))),
        ("seq-decreasing", format!("{}{good}", line(5, "null"))),
        ("seq-duplicate", format!("{good}{good}")),
        ("seq-over-u64", line(1, "null").replace("\"seq\":1", "\"seq\":18446744073709551616")),
        ("seq-negative", line(1, "null").replace("\"seq\":1", "\"seq\":-1")),
        ("seq-float", line(1, "null").replace("\"seq\":1", "\"seq\":1.5")),
        ("seq-string", line(1, "null").replace("\"seq\":1", "\"seq\":\"1\"")),
        ("unknown-severity", good.replace("warn", "fatal")),
        ("missing-kind", good.replace("\"kind\":\"k\",", "")),
        ("unknown-field", line(1, "null,\"extra\":1")),
        ("duplicate-field", line(1, "null,\"seq\":2")),
        ("details-depth-100", line(1, &nested_arrays(100))),
        ("details-depth-2000-unclosed", line(1, &"[".repeat(2000))),
        ("lone-surrogate", line(1, "\"\\ud800\"")),
        ("bom-before-line", format!("{good}\u{feff}{}", line(2, "null"))),
        ("array-line", format!("[1]\n{good}")),
    ]
    .into_iter()
    .map(|(n, text)| (n.to_string(), text.into_bytes()))
    .collect();
    named.push((
        "invalid-utf8-message".into(),
        b"{\"seq\":1,\"timestamp\":1,\"kind\":\"k\",\"severity\":\"warn\",\"message\":\"\xff\",\"details\":null}\n"
            .to_vec(),
    ));
    let mut found = BTreeMap::new();
    let mut rng = Rng::new(0x001A_C1C0);
    let originals = incident_originals(&root.path().join("originals"));
    for i in 0..600 {
        let (original, _) = &originals[i % 2];
        let (bytes, _) = mutate(&mut rng, original, &[]);
        let problems = verdict::incident_problems(root.path(), i, &bytes);
        if let Some(first) = problems.first() {
            let kind = format!("{:?}", first.kind).to_ascii_lowercase();
            smallest_per_class(&mut found, format!("{kind}-{}", slug(&first.reason)), bytes);
        }
    }
    named.extend(found.into_iter().map(|(class, bytes)| (format!("found-{class}"), bytes)));
    for (i, (name, bytes)) in named.iter().enumerate() {
        write("incident_segment", name, bytes, verdict::incident_segment(root.path(), 20_000 + i, bytes));
    }

    // JSON-RPC.
    let named: Vec<(&str, String)> = vec![
        ("ping", r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.into()),
        ("initialize", r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#.into()),
        ("initialized-notification", r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into()),
        ("tools-list", r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.into()),
        ("tools-call-health", r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"getSystemHealth","arguments":{"checkType":"full"}}}"#.into()),
        ("tools-call-unknown-tool", r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope"}}"#.into()),
        ("get-system-health-by-name", r#"{"jsonrpc":"2.0","id":4,"method":"getSystemHealth","params":{"checkType":"quick"}}"#.into()),
        ("get-system-health-by-position", r#"{"jsonrpc":"2.0","id":null,"method":"getSystemHealth","params":["full"]}"#.into()),
        ("recover-system-authorized", r#"{"jsonrpc":"2.0","id":5,"method":"recoverSystem","params":{"errorType":"gpu"}}"#.into()),
        ("report-allocator-stats", r#"{"jsonrpc":"2.0","id":6,"method":"reportAllocatorStats","params":{"device":0,"allocated":1073741824,"reserved":2147483648,"pid":4242}}"#.into()),
        ("batch", r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#.into()),
        ("batch-of-notifications", r#"[{"jsonrpc":"2.0","method":"ping"}]"#.into()),
        ("request-depth-127", format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}}"#, nested_arrays(126))),
        ("empty", String::new()),
        ("not-json", "{\"jsonrpc\":".into()),
        ("nul", "\0".into()),
        ("depth-129", nested_arrays(129)),
        ("depth-5000-unclosed", "[".repeat(5000)),
        ("object-depth-1000", "{\"a\":".repeat(1000) + "1" + &"}".repeat(1000)),
        ("params-depth-200", format!(r#"{{"jsonrpc":"2.0","id":1,"method":"getSystemHealth","params":{{"checkType":{}}}}}"#, nested_arrays(200))),
        ("empty-batch", "[]".into()),
        ("batch-over-limit", format!("[{}]", vec![r#"{"jsonrpc":"2.0","method":"ping"}"#; 101].join(","))),
        ("batch-mixed", r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},1]"#.into()),
        ("jsonrpc-1-0", r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.into()),
        ("jsonrpc-number", r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#.into()),
        ("method-number", r#"{"jsonrpc":"2.0","id":1,"method":1}"#.into()),
        ("params-string", r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#.into()),
        ("id-object", r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#.into()),
        ("unknown-method", r#"{"jsonrpc":"2.0","id":1,"method":"rm -rf"}"#.into()),
        ("truncated-request", r#"{"jsonrpc":"2.0","method":"x""#.into()),
        ("check-type-invalid", r#"{"jsonrpc":"2.0","id":1,"method":"getSystemHealth","params":{"checkType":"deep"}}"#.into()),
        ("unknown-param", r#"{"jsonrpc":"2.0","id":1,"method":"getSystemHealth","params":{"check":"full"}}"#.into()),
        ("too-many-positional", r#"{"jsonrpc":"2.0","id":1,"method":"getSystemHealth","params":["full","quick"]}"#.into()),
        ("recover-system-missing-type", r#"{"jsonrpc":"2.0","id":1,"method":"recoverSystem","params":{}}"#.into()),
        ("allocator-negative", r#"{"jsonrpc":"2.0","id":1,"method":"reportAllocatorStats","params":{"device":-1,"allocated":0,"reserved":0}}"#.into()),
        ("allocator-over-u64", r#"{"jsonrpc":"2.0","id":1,"method":"reportAllocatorStats","params":{"device":0,"allocated":18446744073709551616,"reserved":0}}"#.into()),
        ("allocator-pid-over-i32", r#"{"jsonrpc":"2.0","id":1,"method":"reportAllocatorStats","params":{"device":0,"allocated":0,"reserved":0,"pid":2147483648}}"#.into()),
        ("initialize-without-version", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#.into()),
        ("tools-call-arguments-array", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"getSystemHealth","arguments":[]}}"#.into()),
        ("lone-surrogate-id", r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#.into()),
    ];
    let mut all: Vec<(String, String)> = named.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
    let mut found = BTreeMap::new();
    let mut rng = Rng::new(0x0095_C0C0);
    for _ in 0..3_000 {
        let text = random_message(&mut rng);
        if text.len() > 4096 {
            continue;
        }
        if let Some(response) = verdict::json_rpc_response(&text) {
            let first = match &response {
                Value::Array(items) => items[0].clone(),
                single => single.clone(),
            };
            if let Some(error) = first.get("error") {
                let class =
                    format!("{}-{}", -error["code"].as_i64().unwrap(), slug(error["message"].as_str().unwrap()));
                let class = class.chars().take(60).collect::<String>().trim_end_matches('-').to_string();
                match found.get(&class) {
                    Some(kept) if String::len(kept) <= text.len() => {}
                    _ => {
                        found.insert(class, text);
                    }
                }
            }
        }
    }
    all.extend(found.into_iter().map(|(class, text)| (format!("found-{class}"), text)));
    for (name, text) in &all {
        write("json_rpc", name, text.as_bytes(), verdict::json_rpc(text));
    }
}
