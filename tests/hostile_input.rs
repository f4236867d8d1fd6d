//! Hostile input for every decoder that reads bytes this process did not just write:
//! checkpoint files, operation-journal files, incident-log segments and JSON-RPC messages.
//!
//! Three layers, all seeded and deterministic (no new dependency; the generator, mutations,
//! verdicts and JSON-RPC fuzzer are in `support/`, shared with the corpus writer and `fuzz/`):
//!
//! - property tests: thousands of mutations of valid inputs (bit flips, byte changes,
//!   truncations, insertions, deletions, duplicated spans, hostile length fields) and
//!   hand-made hostile inputs (huge lengths, deep JSON, resealed checksums), asserting no
//!   panic, no damaged data accepted as intact, and no allocation or work driven by a
//!   length field instead of the input's real size;
//! - the committed corpus `fuzz/corpus/<target>/`, replayed: each file's name says the
//!   verdict (`ok-…` accepted cleanly, `bad-…` rejected or reported), see [`verdict`];
//! - `fuzz/`, a cargo-fuzz project over the same four targets (not built by
//!   `cargo test --workspace`).
//!
//! Inputs that once crashed, hung or got the wrong verdict are kept in
//! `fuzz/regressions/<target>/` and replayed by the `regression_…` tests. See `fuzz/README.md`.
//!
//! The incident log is plain JSON Lines with no checksum, so a flipped digit can turn into
//! another valid record: there the property is that such a change stays local (at most one
//! novel record per mutation) and that no record disappears without a problem reported.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::time::{Duration, Instant};

use hpc_health::durable::checkpoint::{decode_checkpoint, encode_checkpoint};
use hpc_health::durable::{
    CheckpointStore, IncidentLog, IncidentLogOptions, Journal, JournalOptions, ReadFilter, Storage, ERR_TOO_LARGE,
};
use hpc_health::rpc::{handle_json_rpc, handle_json_rpc_value, MethodError, RpcLimits};
use serde_json::{json, Value};

mod support;

use support::checks::{bounded, case, json_depth};
use support::corpus::{regressions_dir, replay_corpus, replay_named};
use support::json_rpc::{check_rpc_response, mutated_seed, random_message, AnsweringBackend};
use support::mutation::{mutate, nested_arrays, Mutation};
use support::rng::Rng;
use support::samples::*;
use support::scratch::{scratch_root, sparse_file, state_dir_with, SPARSE_BYTES};
use support::verdict;

/// Cases per property test: about 5 s in all in a debug build on two cores.
const CHECKPOINT_CASES: usize = 60_000;
const JOURNAL_CASES: usize = 3_000;
const INCIDENT_CASES: usize = 3_000;
const RPC_CASES: usize = 10_000;

/// Any change to a checkpoint file is rejected, or (only when the bytes are unchanged)
/// decodes to exactly the original payload.
#[test]
fn checkpoint_mutations_are_rejected_never_misread() {
    let mut rng = Rng::new(0xC4EC_0001);
    let originals: Vec<(Vec<u8>, Vec<u8>)> =
        checkpoint_payloads().into_iter().map(|p| (encode_checkpoint(7, CKPT_TS, &p), p)).collect();
    let (mut accepted, mut rejected) = (0, 0);
    for i in 0..CHECKPOINT_CASES {
        let (file, payload) = &originals[i % originals.len()];
        let fields = [(12, 8, 7), (20, 8, CKPT_TS), (28, 8, payload.len() as u64)];
        let (bytes, mutations) = mutate(&mut rng, file, &fields);
        let outcome = case("checkpoint", i, &bytes, || decode_checkpoint(&bytes, 7).map(|(ts, p)| (ts, p.to_vec())));
        match outcome {
            Ok((ts, decoded)) => {
                assert_eq!(&bytes, file, "case {i}: damaged checkpoint accepted after {mutations:?}");
                assert_eq!((ts, &decoded), (CKPT_TS, payload));
                accepted += 1;
            }
            Err(reason) => {
                assert!(!reason.is_empty() && reason.len() < 300, "case {i}: reason {reason:?}");
                rejected += 1;
            }
        }
    }
    assert!(rejected > CHECKPOINT_CASES * 95 / 100, "{accepted} accepted, {rejected} rejected");
}

/// Resealed files (valid checksums) whose payload was changed: accepted exactly when the
/// payload is JSON within the depth limit, and then returned byte for byte.
#[test]
fn checkpoint_resealed_payloads_are_checked_as_json() {
    let mut rng = Rng::new(0xC4EC_0002);
    let payloads = checkpoint_payloads();
    for i in 0..10_000 {
        let (payload, _) = mutate(&mut rng, &payloads[i % payloads.len()], &[]);
        let bytes = encode_checkpoint(3, 5, &payload);
        let outcome = case("checkpoint-resealed", i, &bytes, || decode_checkpoint(&bytes, 3).map(|(_, p)| p.to_vec()));
        // What the binding needs: a payload it can parse into a `Value`.
        let is_json = serde_json::from_slice::<Value>(&payload).is_ok()
            && json_depth(&payload) <= hpc_health::durable::defaults::MAX_JSON_DEPTH;
        match outcome {
            Ok(decoded) => {
                assert!(is_json, "case {i}: accepted non-JSON {:?}", String::from_utf8_lossy(&payload));
                assert_eq!(decoded, payload);
            }
            Err(reason) => assert!(!is_json, "case {i}: refused valid JSON ({reason})"),
        }
    }
}

/// Hostile header fields under a valid header CRC: each refused for its own reason, in
/// constant time (nothing is sized by the length field: it is compared with the slice).
#[test]
fn checkpoint_hostile_headers() {
    let payload = br#"{"a":1}"#;
    let crc = crc32c::crc32c(payload);
    let len = payload.len() as u64;
    let with_payload = |header: Vec<u8>| [header, payload.to_vec()].concat();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "truncated"),
        (b"HPCCKPT".to_vec(), "truncated"),
        (with_payload(sealed_header(1, 0, 1, 0, u64::MAX, crc)), "length mismatch"),
        (with_payload(sealed_header(1, 0, 1, 0, u32::MAX as u64 + 1, crc)), "length mismatch"),
        (with_payload(sealed_header(1, 0, 1, 0, len + 1, crc)), "length mismatch"),
        (with_payload(sealed_header(1, 0, 1, 0, len - 1, crc)), "length mismatch"),
        (with_payload(sealed_header(1, 0, 1, 0, 0, crc)), "length mismatch"),
        (sealed_header(1, 0, 1, 0, u64::MAX, crc), "length mismatch"),
        (with_payload(sealed_header(0, 0, 1, 0, len, crc)), "version"),
        (with_payload(sealed_header(2, 0, 1, 0, len, crc)), "version"),
        (with_payload(sealed_header(u16::MAX, 0, 1, 0, len, crc)), "version"),
        (with_payload(sealed_header(1, 1, 1, 0, len, crc)), "flags"),
        (with_payload(sealed_header(1, 0x8000, 1, 0, len, crc)), "flags"),
        (with_payload(sealed_header(1, 0, 0, 0, len, crc)), "sequence"),
        (with_payload(sealed_header(1, 0, u64::MAX, 0, len, crc)), "sequence"),
        (with_payload(sealed_header(1, 0, 1, 0, len, crc ^ 1)), "payload CRC"),
        (with_payload(sealed_header(1, 0, 1, u64::MAX, len, crc))[..50].to_vec(), "length mismatch"),
        ([b"HPCCKPT\x02".to_vec(), sealed_header(1, 0, 1, 0, len, crc)[8..].to_vec()].concat(), "magic"),
    ];
    for (i, (bytes, why)) in cases.iter().enumerate() {
        let start = Instant::now();
        let reason = decode_checkpoint(bytes, 1).map(|_| ()).unwrap_err();
        assert!(reason.contains(why), "case {i}: wanted {why:?}, got {reason:?}");
        assert!(start.elapsed() < Duration::from_millis(50), "case {i}");
    }
    // A timestamp of u64::MAX is only a number.
    let ok = with_payload(sealed_header(1, 0, 1, u64::MAX, len, crc));
    assert_eq!(decode_checkpoint(&ok, 1).unwrap(), (u64::MAX, &payload[..]));

    // Sealed payloads that are not acceptable JSON; deep ones are refused by the flat depth
    // scan before any recursive parser sees them (500 000 levels would overflow the stack).
    for (i, bad) in [
        b"".to_vec(),
        b"{".to_vec(),
        b"{} {}".to_vec(),
        b"{}x".to_vec(),
        b"NaN".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
        nested_arrays(hpc_health::durable::defaults::MAX_JSON_DEPTH + 1).into_bytes(),
        nested_arrays(500_000).into_bytes(),
        "[".repeat(500_000).into_bytes(),
        "{\"a\":".repeat(200_000).into_bytes(),
    ]
    .iter()
    .enumerate()
    {
        let bytes = encode_checkpoint(1, 0, bad);
        assert!(decode_checkpoint(&bytes, 1).is_err(), "sealed case {i} accepted");
    }
}

/// A checkpoint file far over the size limit is passed over without being read.
#[test]
fn checkpoint_store_does_not_read_oversized_files() {
    let root = scratch_root();
    let dir = root.path().join("ckpt");
    let (store, _) = CheckpointStore::open(&dir, 2, 1 << 20, Storage::new()).unwrap();
    store.write(b"{\"gen\":1}").unwrap();
    drop(store);
    sparse_file(&dir.join("checkpoint-00000000000000000009.ckpt"), SPARSE_BYTES);
    let (store, skipped) = bounded("open", 256, || CheckpointStore::open(&dir, 2, 1 << 20, Storage::new()).unwrap());
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].reason.contains("more than the limit"), "{skipped:?}");
    let latest = bounded("latest_valid", 256, || store.latest_valid().unwrap());
    assert_eq!(latest.checkpoint.unwrap().payload, b"{\"gen\":1}");
}

/// The frames this test writes are the frames the journal writes.
#[test]
fn journal_test_frames_match_the_writer() {
    let root = scratch_root();
    let dir = root.path().join("journal");
    let (journal, _) = open_journal(&dir);
    journal.begin_operation("a", json!({ "n": 1 })).unwrap();
    journal.end_operation("a", json!("ok")).unwrap();
    drop(journal);
    let name = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("journal-") && n.ends_with(".log"))
        .unwrap();
    let bytes = fs::read(dir.join(name)).unwrap();
    let (mut at, mut records) = (0, Vec::new());
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let payload = &bytes[at + 8..at + 8 + len];
        assert_eq!(journal_frame(payload), bytes[at..at + 8 + len]);
        records.push(serde_json::from_slice::<Value>(payload).unwrap());
        at += 8 + len;
    }
    let ts = records[0]["ts"].as_u64().unwrap();
    assert_eq!(records[0], begin("a", ts, json!({ "n": 1 })));
    assert_eq!(records[1]["op"], "end");
}

/// Damaged journals always open; what they replay is exactly what some prefix of the
/// records gave (never a damaged record's content), the damage is reported, and after
/// recovery the journal works and reopens cleanly.
#[test]
fn journal_mutations_recover_a_prefix() {
    let mut rng = Rng::new(0x70A1_0001);
    let root = scratch_root();
    let originals = journal_originals();
    let (mut changed, mut reported) = (0, 0);
    for i in 0..JOURNAL_CASES {
        let original = &originals[i % originals.len()];
        let (bytes, mutations) = mutate(&mut rng, &original.bytes, &original.length_fields);
        let states = prefix_states(&original.records);
        case("journal", i, &bytes, || {
            let dir = state_dir_with(root.path(), i, verdict::JOURNAL_FILE, &bytes);
            let (journal, problems) = open_journal(&dir);
            let ops = active(&journal);
            for problem in &problems {
                assert!(problem.offset <= bytes.len() as u64, "{problem:?}");
            }
            // No record's content is made up: every active operation is some begin record.
            for (id, (ts, details)) in &ops {
                assert!(
                    original.records.iter().any(|r| r == &begin(id, *ts, details.clone())),
                    "{id:?} replayed from damage after {mutations:?}"
                );
            }
            if mutations.iter().all(Mutation::keeps_order) {
                assert!(states.contains(&ops), "not a prefix after {mutations:?}: {ops:?}");
            }
            if bytes == original.bytes {
                assert!(problems.is_empty(), "{problems:?}");
                assert_eq!(&ops, states.last().unwrap());
            } else {
                changed += 1;
                reported += usize::from(!problems.is_empty());
            }
            drop(journal);
            fs::remove_dir_all(&dir).unwrap();
            // The whole harness (new operation, reopen) as the corpus runs it.
            verdict::journal(root.path(), i, &bytes);
        });
    }
    // The rest lost whole records at the end (truncated or deleted at a frame boundary:
    // indistinguishable from a crash before those appends) or an empty file.
    eprintln!("{reported} of {changed} damaged journals reported");
    assert!(reported > changed * 9 / 10, "only {reported} of {changed} damaged journals were reported");
}

/// Frames with valid checksums and hostile contents: refused or reported, never a panic,
/// and a length field is checked against the limit before anything is sliced or read.
#[test]
fn journal_hostile_frames() {
    let root = scratch_root();
    let good = journal_frame(&serde_json::to_vec(&begin("a", 1, json!(null))).unwrap());
    let raw_header = |len: u32, crc: u32| [len.to_le_bytes(), crc.to_le_bytes()].concat();
    let deep = format!(r#"{{"op":"begin","id":"d","ts":1,"details":{}}}"#, nested_arrays(200_000));
    let cases: Vec<(Vec<u8>, bool)> = vec![
        (raw_header(u32::MAX, 0), false),
        ([raw_header(u32::MAX, 0), good.clone()].concat(), false),
        ([raw_header(0, 0), good.clone()].concat(), false),
        ([raw_header((1 << 20) + 1, 0), vec![b'{'; 64]].concat(), false),
        ([good.clone(), raw_header(1 << 20, 0)].concat(), false),
        (journal_frame(b"not json"), false),
        (journal_frame(b"{}"), false),
        (journal_frame(br#"{"op":"restart","id":"a","ts":1}"#), false),
        (journal_frame(br#"{"op":"begin","id":"a","ts":-1,"details":null}"#), false),
        (journal_frame(br#"{"op":"begin","id":"a","ts":18446744073709551616,"details":null}"#), false),
        (journal_frame(deep.as_bytes()), false),
        ([journal_frame(deep.as_bytes()), good.clone()].concat(), false),
        (journal_frame(&[b'{'; 1 << 20]), false),
        // Intact but inconsistent: reported, the later begin kept, the stray end ignored.
        ([good.clone(), good.clone()].concat(), false),
        (journal_frame(&serde_json::to_vec(&end("nobody", 1)).unwrap()), false),
        // Ids the writer refuses (empty, over 256 bytes) are reported and not replayed.
        (journal_frame(br#"{"op":"begin","id":"","ts":0,"details":null}"#), false),
        (journal_frame(&serde_json::to_vec(&begin(&"x".repeat(257), 1, json!(null))).unwrap()), false),
        (good.clone(), true),
    ];
    for (i, (bytes, clean)) in cases.into_iter().enumerate() {
        let accepted = case("journal-hostile", i, &bytes, || {
            bounded("journal open", 256, || verdict::journal(root.path(), i, &bytes))
        });
        assert_eq!(accepted, clean, "case {i}");
    }
}

/// A journal file far over the size limit is refused without being read.
#[test]
fn journal_does_not_read_oversized_files() {
    let root = scratch_root();
    let dir = root.path().join("journal");
    drop(open_journal(&dir));
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_str().unwrap().starts_with("journal-") {
            fs::remove_file(path).unwrap();
        }
    }
    sparse_file(&dir.join("journal-00000000000000000007.log"), SPARSE_BYTES);
    let error = bounded("journal open", 256, || {
        Journal::open(&dir, JournalOptions::default(), Storage::new()).map(|_| ()).unwrap_err()
    });
    assert_eq!(error.code, ERR_TOO_LARGE, "{error}");
}

/// A crafted journal once made replay quadratic (hours at the 64 MiB limit); the search for
/// an intact frame now hashes a bounded number of bytes.
#[test]
fn regression_journal_replay_is_linear() {
    let root = scratch_root();
    let size = 1 << 20;
    let mut bytes = vec![0u8; size];
    let (mut at, len) = (1, (size / 2) as u32);
    while at + 9 < size {
        bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        bytes[at + 8] = b'{';
        at += 10;
    }
    let dir = state_dir_with(root.path(), 0, verdict::JOURNAL_FILE, &bytes);
    let start = Instant::now();
    let (_journal, problems) = open_journal(&dir);
    assert!(!problems.is_empty());
    assert!(start.elapsed() < Duration::from_secs(2), "replaying 1 MiB took {:?}", start.elapsed());
}

/// Damage to a segment stays local: at most one made-up record per mutation (the format
/// has no checksum, so a changed digit is a different valid record), sequence numbers
/// keep increasing, nothing disappears unreported (unless whole lines were cut), and the
/// log keeps working with numbers never reused.
#[test]
fn incident_segment_mutations_stay_local_and_reported() {
    let mut rng = Rng::new(0x1AC1_0001);
    let root = scratch_root();
    let originals = incident_originals(root.path());
    let (mut changed, mut reported) = (0, 0);
    for i in 0..INCIDENT_CASES {
        let (original, records) = &originals[i % originals.len()];
        let (bytes, mutations) = mutate(&mut rng, original, &[]);
        case("incident_segment", i, &bytes, || {
            let dir = state_dir_with(root.path(), i, verdict::SEGMENT_FILE, &bytes);
            let (log, problems) = open_log(&dir);
            let read = log.read(&ReadFilter::default()).unwrap();
            check_records(&read.records);
            let novel = read.records.iter().filter(|r| !records.contains(r)).count();
            assert!(novel <= mutations.len(), "{novel} new records after {mutations:?}: {:?}", read.records);
            let missing = records.iter().filter(|r| !read.records.contains(r)).count();
            let any_problem = !problems.is_empty() || !read.problems.is_empty();
            // A record changed into another valid one is novel, not lost; beyond those,
            // a record may only go missing with a problem reported.
            if missing > novel && mutations.iter().all(Mutation::keeps_order) {
                assert!(any_problem, "{missing} records lost without a word after {mutations:?}");
            }
            if &bytes == original {
                assert!(!any_problem && missing == 0, "{problems:?} {:?}", read.problems);
            } else {
                changed += 1;
                reported += usize::from(any_problem);
            }
            drop(log);
            fs::remove_dir_all(&dir).unwrap();
            verdict::incident_segment(root.path(), i, &bytes);
        });
    }
    eprintln!("{reported} of {changed} damaged segments reported");
    assert!(reported > changed * 3 / 4, "only {reported} of {changed} damaged segments were reported");
}

/// Lines that are not ours: refused and reported, never a panic; huge or deep values
/// are refused by the flat depth scan first.
#[test]
fn incident_segment_hostile_lines() {
    let root = scratch_root();
    let line = |seq: &str, rest: &str| {
        format!("{{\"seq\":{seq},\"timestamp\":1,\"kind\":\"k\",\"severity\":\"info\",\"message\":\"m\",\"details\":{rest}}}\n")
    };
    let good = line("1", "null");
    let cases: Vec<(String, bool)> = vec![
        (String::new(), true),
        (good.clone(), true),
        (good.replace('\n', "\r\n"), true),
        // Sequence numbers start at 1: a 0 is out of order.
        (line("0", "null"), false),
        (line("9007199254740991", "null"), true),
        (line("18446744073709551616", "null"), false),
        (line("-1", "null"), false),
        (line("1.5", "null"), false),
        (line("\"1\"", "null"), false),
        (line("1", &nested_arrays(99)), true),
        (line("1", &nested_arrays(100)), false),
        (line("1", &nested_arrays(200_000)), false),
        (line("1", &"[".repeat(200_000)), false),
        (line("1", "\"\\ud800\""), false),
        (line("1", "null,\"extra\":1"), false),
        (line("1", "null,\"seq\":2"), false),
        (good.replace("info", "fatal"), false),
        (good.replace("\"kind\":\"k\",", ""), false),
        (good.trim_end().to_string(), false),
        (format!("{good}\n{}", line("2", "null")), false),
        (format!("{}{good}", line("5", "null")), false),
        (format!("\0\0\0\n{}", line("2", "null")), false),
        (format!("{}\u{feff}{}", line("1", "1"), line("2", "2")), false),
        (format!("{}{}", line("1", "\"\u{1F600}\""), "x".repeat(300_000)), false),
    ];
    for (i, (text, clean)) in cases.into_iter().enumerate() {
        let accepted = case("incident-hostile", i, text.as_bytes(), || {
            bounded("incident open", 256, || verdict::incident_segment(root.path(), i, text.as_bytes()))
        });
        assert_eq!(accepted, clean, "case {i}: {:?}", &text[..text.len().min(200)]);
    }
    // Invalid UTF-8 inside a string.
    let bad_utf8 = [&good.as_bytes()[..good.len() - 6], b"\"\xff\"}\n", line("2", "null").as_bytes()].concat();
    assert!(!verdict::incident_segment(root.path(), 1000, &bad_utf8));
}

/// A segment far over the read limit is refused without being read.
#[test]
fn incident_log_does_not_read_oversized_segments() {
    let root = scratch_root();
    let dir = root.path().join("incidents");
    drop(open_log(&dir));
    sparse_file(&dir.join(verdict::SEGMENT_FILE), SPARSE_BYTES);
    let error = bounded("incident open", 256, || {
        IncidentLog::open(&dir, IncidentLogOptions::default(), Storage::new()).map(|_| ()).unwrap_err()
    });
    assert_eq!(error.code, ERR_TOO_LARGE, "{error}");
}

/// Sequence numbers near `u64::MAX` once overflowed (a panic in debug builds, reused numbers
/// in release): lines beyond 2^53 − 1 are now refused and the log stops handing out numbers there.
#[test]
fn regression_incident_segment() {
    let root = scratch_root();
    replay_named(&regressions_dir("incident_segment"), |i, bytes| verdict::incident_segment(root.path(), i, bytes));
    let dir = root.path().join("named-max");
    fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    fs::write(dir.join("incidents-18446744073709551615.jsonl"), b"").unwrap();
    case("incidents-18446744073709551615.jsonl", 0, b"", || {
        let (log, _) = open_log(&dir);
        let _ = log.record(incident("k"));
    });
}

/// Lone surrogates and invalid UTF-8 inside strings once passed validation and made a
/// checkpoint "valid" that restore then refused; validation now parses as readers do.
#[test]
fn regression_checkpoint() {
    replay_named(&regressions_dir("checkpoint"), |_, bytes| verdict::checkpoint(bytes));
}

/// Random, mutated and deeply nested messages: every answer is what JSON-RPC 2.0 says
/// (checked against an independent reading), the parsed-value entry point agrees with the
/// text one, and nothing panics or overflows the stack.
#[test]
fn json_rpc_random_messages() {
    let mut rng = Rng::new(0x95C0_0001);
    let small = RpcLimits { max_message_bytes: 2048, max_batch: 3, ..RpcLimits::default() };
    let default = RpcLimits::default();
    let (mut errors, mut results) = (0, 0);
    for i in 0..RPC_CASES {
        let text = random_message(&mut rng);
        let limits = if i % 4 == 3 { &small } else { &default };
        let backend = AnsweringBackend { allow: i % 2 == 0, fail: None };
        case("json_rpc", i, text.as_bytes(), || {
            let response = futures::executor::block_on(handle_json_rpc(&text, &backend, limits));
            check_rpc_response(&text, limits, &response);
            match &response {
                Some(r) if r.to_string().contains("\"error\"") => errors += 1,
                Some(_) => results += 1,
                None => {}
            }
            if text.len() <= limits.max_message_bytes {
                if let Ok(value) = serde_json::from_str::<Value>(&text) {
                    if value.to_string().len() <= limits.max_message_bytes {
                        let again = futures::executor::block_on(handle_json_rpc_value(value, &backend, limits));
                        assert_eq!(again, response, "the parsed-value entry point answers differently");
                    }
                }
            }
        });
    }
    eprintln!("{errors} errors, {results} results");
    assert!(errors > RPC_CASES / 4 && results > RPC_CASES / 4, "{errors} errors, {results} results");
}

/// Valid messages mutated in their text or their structure, against backends that refuse,
/// allow or fail: never a panic, every answer what JSON-RPC 2.0 says, and the parsed-value
/// entry point answers in the same shape.
#[tokio::test]
async fn json_rpc_mutated_valid_messages() {
    let backends = [
        AnsweringBackend::refusing(),
        AnsweringBackend::allowing(),
        AnsweringBackend::failing(MethodError::internal("x")),
    ];
    let limits = RpcLimits { max_batch: 8, ..RpcLimits::default() };
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for round in 0..10_000 {
        let backend = rng.pick(&backends);
        let input = mutated_seed(&mut rng, round);
        let response = handle_json_rpc(&input, backend, &limits).await;
        check_rpc_response(&input, &limits, &response);
        // The parsed entry point agrees with the text one.
        if let Ok(value) = serde_json::from_str::<Value>(&input) {
            let again = handle_json_rpc_value(value, backend, &limits).await;
            assert_eq!(again.as_ref().map(Value::is_array), response.as_ref().map(Value::is_array), "{input}");
        }
    }
}

/// The checker itself catches answers that break JSON-RPC 2.0, including what the dispatcher
/// tests once checked on their own: unknown error members, an empty batch answer.
#[test]
fn json_rpc_checker_refuses_malformed_answers() {
    let limits = RpcLimits::default();
    let refused = |text: &str, answer: Value| {
        std::panic::catch_unwind(|| check_rpc_response(text, &limits, &Some(answer))).is_err()
    };
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert!(!refused(ping, json!({ "jsonrpc": "2.0", "id": 1, "result": {} })));
    assert!(refused(ping, json!({ "jsonrpc": "2.0", "id": 2, "result": {} })));
    assert!(refused(ping, json!({ "jsonrpc": "2.0", "id": 1, "result": {}, "error": {} })));
    let error = |members: Value| json!({ "jsonrpc": "2.0", "id": 1, "error": members });
    assert!(!refused(ping, error(json!({ "code": -32603, "message": "m", "data": 1 }))));
    assert!(refused(ping, error(json!({ "code": -32603, "message": "m", "extra": 1 }))));
    assert!(refused(ping, error(json!({ "code": -1, "message": "m" }))));
    let notifications = r#"[{"jsonrpc":"2.0","method":"ping"}]"#;
    assert!(refused(notifications, json!([])));
    let invalid = "[1]";
    assert!(refused(invalid, json!([{ "jsonrpc": "2.0", "id": null, "result": {} }])));
}

/// The size limit applies before parsing, to the byte; deep nesting within it is a parse
/// error (serde_json's recursion limit), never a stack overflow.
#[test]
fn json_rpc_size_and_depth_limits() {
    let limits = RpcLimits::default();
    let backend = AnsweringBackend::refusing();
    let call = |text: &str| futures::executor::block_on(handle_json_rpc(text, &backend, &limits));
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let pad = |n: usize| format!("{}{}", ping, " ".repeat(n - ping.len()));
    assert_eq!(call(&pad(limits.max_message_bytes)).unwrap()["result"], json!({}));
    assert_eq!(call(&pad(limits.max_message_bytes + 1)).unwrap()["error"]["code"], -32600);
    for depth in [127usize, 128, 129, 1_000, 100_000, (limits.max_message_bytes / 2) - 1] {
        for text in
            [nested_arrays(depth), "[".repeat(depth * 2), "{\"a\":".repeat(depth / 3) + "0" + &"}".repeat(depth / 3)]
        {
            let response = bounded("deep message", 256, || call(&text));
            check_rpc_response(&text, &limits, &response);
        }
    }
    // A batch at the limit is served; one over it is refused as a whole.
    let batch = |n: usize| format!("[{}]", vec![ping; n].join(","));
    assert_eq!(call(&batch(limits.max_batch)).unwrap().as_array().unwrap().len(), limits.max_batch);
    assert_eq!(call(&batch(limits.max_batch + 1)).unwrap()["error"]["code"], -32600);
}

#[test]
fn corpus_checkpoint() {
    replay_corpus("checkpoint", |_, bytes| verdict::checkpoint(bytes));
}

#[test]
fn corpus_journal() {
    let root = scratch_root();
    replay_corpus("journal", |i, bytes| verdict::journal(root.path(), i, bytes));
}

#[test]
fn corpus_incident_segment() {
    let root = scratch_root();
    replay_corpus("incident_segment", |i, bytes| verdict::incident_segment(root.path(), i, bytes));
}

#[test]
fn corpus_json_rpc() {
    replay_corpus("json_rpc", |_, bytes| verdict::json_rpc(&String::from_utf8_lossy(bytes)));
}
