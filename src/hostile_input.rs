//! Hostile input for every decoder that reads bytes this process did not just write:
//! checkpoint files, operation-journal files, incident-log segments and JSON-RPC messages.
//!
//! Three layers, all seeded and deterministic (no new dependency; a splitmix64 generator):
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

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::durable::checkpoint::{decode_checkpoint, encode_checkpoint, CHECKPOINT_HEADER_BYTES, CHECKPOINT_MAGIC};
use crate::durable::{
    CheckpointStore, IncidentLog, IncidentLogOptions, IncidentRecord, Journal, JournalOptions, ProblemKind, RateLimit,
    ReadFilter, RecordOutcome, RecoveryProblem, Storage, ERR_TOO_LARGE,
};
use crate::incident::{Incident, IncidentSeverity};
use crate::rpc::{handle_json_rpc, handle_json_rpc_value, AnsweringBackend, RpcLimits};

/// Cases per property test: about 5 s in all in a debug build on two cores.
const CHECKPOINT_CASES: usize = 60_000;
const JOURNAL_CASES: usize = 3_000;
const INCIDENT_CASES: usize = 3_000;
const RPC_CASES: usize = 10_000;

// ---------------------------------------------------------------------------------------
// Deterministic randomness and mutations

/// splitmix64: small, fast, good enough to spread mutations; seeded per test.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next_u64().is_multiple_of(n)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Byte sequences that mean something to one of the decoders.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\0",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud800",
    b",",
    b":",
    b"null",
    b"-1",
    b"1e999",
    b"99999999999999999999",
    b"\xff\xfe",
    b"\xc3",
    b"[[[[[[[[[[[[[[[[",
    b"{\"op\":\"begin\"",
];

/// Values written into length fields.
fn hostile_lengths(actual: u64) -> [u64; 11] {
    [
        0,
        1,
        actual.wrapping_sub(1),
        actual + 1,
        actual.wrapping_mul(2),
        u32::MAX as u64,
        u32::MAX as u64 + 1,
        1 << 31,
        i64::MAX as u64,
        u64::MAX,
        u64::MAX - 43,
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        value: u8,
    },
    Truncate {
        len: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    /// Copies `len` bytes from `from` to just before `to`.
    Duplicate {
        from: usize,
        len: usize,
        to: usize,
    },
    /// Overwrites the little-endian integer of `width` bytes at `at`.
    Length {
        at: usize,
        width: usize,
        value: u64,
    },
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let n = bytes.len();
        match *self {
            Mutation::FlipBit { at, bit } if at < n => bytes[at] ^= 1 << bit,
            Mutation::SetByte { at, value } if at < n => bytes[at] = value,
            Mutation::Truncate { len } => bytes.truncate(len),
            Mutation::Insert { at, bytes: ref inserted } => {
                let at = at.min(n);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Mutation::Delete { at, len } if at < n => {
                bytes.drain(at..(at + len).min(n));
            }
            Mutation::Duplicate { from, len, to } if from < n => {
                let span = bytes[from..(from + len).min(n)].to_vec();
                let to = to.min(n);
                bytes.splice(to..to, span);
            }
            Mutation::Length { at, width, value } if at + width <= n => {
                bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
            _ => {}
        }
    }

    /// Keeps every byte it does not touch in order (no deleted or copied spans): damage
    /// can hide what follows it but cannot splice the rest together.
    fn keeps_order(&self) -> bool {
        !matches!(self, Mutation::Delete { .. } | Mutation::Duplicate { .. } | Mutation::Truncate { .. })
    }
}

/// One random mutation of `bytes`; `length_fields` are `(offset, width)` of the input's
/// little-endian length fields, which get hostile values.
fn random_mutation(rng: &mut Rng, bytes: &[u8], length_fields: &[(usize, usize, u64)]) -> Mutation {
    let n = bytes.len().max(1);
    match rng.below(16) {
        0..=4 => Mutation::FlipBit { at: rng.below(n), bit: rng.below(8) as u8 },
        5 | 6 => Mutation::SetByte { at: rng.below(n), value: *rng.pick(&[0u8, 0xff, b'\n', b'{', b'"', b'9', 0x80]) },
        7 => Mutation::Truncate { len: rng.below(n) },
        8 | 9 => {
            let inserted = if rng.one_in(2) {
                rng.pick(TOKENS).to_vec()
            } else {
                let n = 1 + rng.below(12);
                rng.bytes(n)
            };
            Mutation::Insert { at: rng.below(n + 1), bytes: inserted }
        }
        10 | 11 => Mutation::Delete { at: rng.below(n), len: 1 + rng.below(16) },
        12 => Mutation::Duplicate { from: rng.below(n), len: 1 + rng.below(64), to: rng.below(n + 1) },
        _ if !length_fields.is_empty() => {
            let &(at, width, actual) = rng.pick(length_fields);
            Mutation::Length { at, width, value: *rng.pick(&hostile_lengths(actual)) }
        }
        _ => Mutation::FlipBit { at: rng.below(n), bit: rng.below(8) as u8 },
    }
}

/// One to three mutations (mostly one), applied in order.
fn mutate(rng: &mut Rng, original: &[u8], length_fields: &[(usize, usize, u64)]) -> (Vec<u8>, Vec<Mutation>) {
    let count = match rng.below(8) {
        0..=4 => 1,
        5 | 6 => 2,
        _ => 3,
    };
    let mut bytes = original.to_vec();
    let mut applied = Vec::new();
    for _ in 0..count {
        let mutation = random_mutation(rng, &bytes, length_fields);
        mutation.apply(&mut bytes);
        applied.push(mutation);
    }
    (bytes, applied)
}

/// Runs one case, turning a panic into a failure that says how to reproduce it.
fn case<T>(target: &str, index: usize, input: &[u8], run: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(value) => value,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let shown: String = String::from_utf8_lossy(&input[..input.len().min(600)]).into_owned();
            panic!("{target} case {index} ({} bytes) failed: {message}\ninput: {shown:?}", input.len())
        }
    }
}

/// The deepest nesting of JSON arrays/objects in `bytes` (strings skipped).
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn nested_arrays(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

// ---------------------------------------------------------------------------------------
// State directories

/// A root for many state directories: tmpfs where there is one, since every journal and
/// incident-log open fsyncs (thousands of cases would take minutes on a disk).
fn scratch_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("hpc-health-hostile-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

/// A fresh 0700 directory holding one file `name` with `bytes`.
fn state_dir_with(root: &Path, case: usize, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = root.join(format!("case-{case}"));
    fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
    dir
}

/// Peak resident memory of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `run` and asserts it neither took long nor raised peak memory by `max_mib`.
fn bounded<T>(what: &str, max_mib: u64, run: impl FnOnce() -> T) -> T {
    let (rss, start) = (peak_rss_kib(), Instant::now());
    let value = run();
    let (grew_mib, took) = (peak_rss_kib().saturating_sub(rss) / 1024, start.elapsed());
    assert!(grew_mib < max_mib, "{what}: peak memory grew by {grew_mib} MiB");
    assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
    value
}

/// A sparse file of `len` bytes (no disk used): reading it whole would show up in memory.
fn sparse_file(path: &Path, len: u64) {
    fs::File::create(path).unwrap().set_len(len).unwrap();
}

const SPARSE_BYTES: u64 = 4 << 30;

// ---------------------------------------------------------------------------------------
// Verdicts: what each target accepts. The corpus names and the fuzz targets use these.

mod verdict {
    use super::*;

    /// The sequence number a corpus checkpoint file is decoded for.
    pub const CHECKPOINT_SEQ: u64 = 1;
    pub const JOURNAL_FILE: &str = "journal-00000000000000000001.log";
    pub const SEGMENT_FILE: &str = "incidents-00000000000000000001.jsonl";

    /// Accepted: the file decodes.
    pub fn checkpoint(bytes: &[u8]) -> bool {
        decode_checkpoint(bytes, CHECKPOINT_SEQ).is_ok()
    }

    /// Accepted: opens with nothing to repair or report.
    pub fn journal(root: &Path, case: usize, bytes: &[u8]) -> bool {
        journal_problems(root, case, bytes).is_empty()
    }

    /// What opening found. Whatever it found, the journal must open, take a new operation
    /// and reopen without a torn tail or mid-file damage and with the same operations.
    pub fn journal_problems(root: &Path, case: usize, bytes: &[u8]) -> Vec<RecoveryProblem> {
        let dir = state_dir_with(root, case, JOURNAL_FILE, bytes);
        let (journal, problems) = open_journal(&dir);
        let before = active(&journal);
        journal.begin_operation("after-recovery", json!({ "case": case })).unwrap();
        drop(journal);
        let (journal, again) = open_journal(&dir);
        assert!(
            again.iter().all(|p| p.kind == ProblemKind::InconsistentRecord),
            "recovery did not settle: {again:?} (first open: {problems:?})"
        );
        let mut after = active(&journal);
        assert!(after.remove("after-recovery").is_some(), "a new operation after recovery was lost");
        assert_eq!(after, before, "reopening changed the active operations");
        drop(journal);
        fs::remove_dir_all(&dir).unwrap();
        problems
    }

    fn hpc_max_seq() -> u64 {
        crate::durable::incident_log::MAX_SEQ
    }

    /// Accepted: opens and reads back with no problem.
    pub fn incident_segment(root: &Path, case: usize, bytes: &[u8]) -> bool {
        incident_problems(root, case, bytes).is_empty()
    }

    /// What opening and reading found. Whatever it found, the log must take a new record
    /// with a sequence number above every one read, and reopen without a torn tail and
    /// with the same records.
    pub fn incident_problems(root: &Path, case: usize, bytes: &[u8]) -> Vec<RecoveryProblem> {
        let dir = state_dir_with(root, case, SEGMENT_FILE, bytes);
        let (log, mut problems) = open_log(&dir);
        let read = log.read(&ReadFilter::default()).unwrap();
        check_records(&read.records);
        let highest = read.records.last().map_or(0, |r| r.seq);
        assert!(log.next_seq() > highest, "next_seq {} would reuse {highest}", log.next_seq());
        let written = match log.record(incident("after-recovery")) {
            Ok(RecordOutcome::Written { seq, .. }) => seq,
            Ok(RecordOutcome::RateLimited) => panic!("rate limited"),
            // The one way to refuse a new record: the sequence numbers JavaScript can hold are used up.
            Err(e) if highest == hpc_max_seq() => {
                assert_eq!(e.code, crate::durable::ERR_INVALID_ARGUMENT);
                return problems;
            }
            Err(e) => panic!("{e:?}"),
        };
        assert!(written > highest, "new record got seq {written}, after {highest}");
        drop(log);
        let (log, again) = open_log(&dir);
        assert!(again.iter().all(|p| p.kind != ProblemKind::TornTail), "torn tail again: {again:?}");
        let mut reread = log.read(&ReadFilter::default()).unwrap().records;
        let last = reread.pop().expect("the new record");
        assert_eq!((last.seq, last.kind.as_str()), (written, "after-recovery"));
        assert_eq!(reread, read.records, "reopening changed the records");
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
        problems.extend(read.problems);
        problems
    }

    /// Accepted: answered without any `error` member (nothing, for notifications; MCP tool
    /// failures are results with `isError`).
    pub fn json_rpc(text: &str) -> bool {
        match json_rpc_response(text) {
            None => true,
            Some(Value::Array(items)) => items.iter().all(|r| r.get("error").is_none()),
            Some(single) => single.get("error").is_none(),
        }
    }

    /// The answer (with a backend that authorizes), checked to be well formed.
    pub fn json_rpc_response(text: &str) -> Option<Value> {
        let limits = RpcLimits::default();
        let response = futures::executor::block_on(handle_json_rpc(text, &AnsweringBackend { allow: true }, &limits));
        check_rpc_response(text, &limits, &response);
        response
    }
}

// ---------------------------------------------------------------------------------------
// Checkpoint files

fn checkpoint_payloads() -> Vec<Vec<u8>> {
    let big: Value = (0..40).map(|i| (format!("k{i}"), json!({ "v": [i, "x".repeat(i)], "f": 0.5 }))).collect();
    vec![
        b"{}".to_vec(),
        b"[]".to_vec(),
        b"0".to_vec(),
        br#"{"gen":1,"memory_state":{"gpus":[1,2,3]},"state":null}"#.to_vec(),
        "\"\u{e9}\\n\\u00e9\u{1F600}\"".as_bytes().to_vec(),
        nested_arrays(crate::durable::defaults::MAX_JSON_DEPTH).into_bytes(),
        serde_json::to_vec(&big).unwrap(),
    ]
}

/// A checkpoint with every field chosen: a valid header CRC over hostile contents.
fn sealed_header(version: u16, flags: u16, seq: u64, ts: u64, len: u64, payload_crc: u32) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CHECKPOINT_HEADER_BYTES);
    bytes.extend_from_slice(&CHECKPOINT_MAGIC);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&flags.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&ts.to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&payload_crc.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

const CKPT_TS: u64 = 1_700_000_000_000;

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
            && json_depth(&payload) <= crate::durable::defaults::MAX_JSON_DEPTH;
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
        nested_arrays(crate::durable::defaults::MAX_JSON_DEPTH + 1).into_bytes(),
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

// ---------------------------------------------------------------------------------------
// Journal files

/// `u32 length | u32 CRC-32C of the length bytes then the payload | payload`.
fn journal_frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), payload);
    [&len[..], &crc.to_le_bytes(), payload].concat()
}

fn begin(id: &str, ts: u64, details: Value) -> Value {
    json!({ "op": "begin", "id": id, "ts": ts, "details": details })
}

fn end(id: &str, ts: u64) -> Value {
    json!({ "op": "end", "id": id, "ts": ts, "result": "ok" })
}

/// A journal file and its records.
struct JournalFile {
    bytes: Vec<u8>,
    records: Vec<Value>,
    /// (offset, width, value) of each frame's length field.
    length_fields: Vec<(usize, usize, u64)>,
}

fn journal_file(records: Vec<Value>) -> JournalFile {
    let mut bytes = Vec::new();
    let mut length_fields = Vec::new();
    for record in &records {
        let payload = serde_json::to_vec(record).unwrap();
        length_fields.push((bytes.len(), 4, payload.len() as u64));
        bytes.extend(journal_frame(&payload));
    }
    JournalFile { bytes, records, length_fields }
}

fn journal_originals() -> Vec<JournalFile> {
    vec![
        journal_file(vec![
            begin("restart-gpu-0", 10, json!({ "gpu": 0 })),
            begin("drain", 11, json!(null)),
            end("restart-gpu-0", 12),
            begin("checkpoint", 13, json!({ "nested": [[1, 2], { "x": "y" }] })),
            end("drain", 14),
        ]),
        journal_file(vec![begin("one", 1, json!({ "text": "é\n\u{0}".repeat(50) }))]),
        journal_file(
            (0..24)
                .map(
                    |i| {
                        if i % 3 == 2 {
                            end(&format!("op{}", i - 1), i)
                        } else {
                            begin(&format!("op{i}"), i, json!(i))
                        }
                    },
                )
                .collect(),
        ),
        journal_file(vec![]),
    ]
}

type ActiveMap = BTreeMap<String, (u64, Value)>;

fn active(journal: &Journal) -> ActiveMap {
    journal.active_operations().into_iter().map(|o| (o.id, (o.started_at_ms, o.details))).collect()
}

fn apply_record(ops: &mut ActiveMap, record: &Value) {
    let id = record["id"].as_str().unwrap().to_string();
    if record["op"] == "begin" {
        ops.insert(id, (record["ts"].as_u64().unwrap(), record["details"].clone()));
    } else {
        ops.remove(&id);
    }
}

/// The active operations after each prefix of `records` (0..=len).
fn prefix_states(records: &[Value]) -> Vec<ActiveMap> {
    let mut states = vec![ActiveMap::new()];
    for record in records {
        let mut next = states.last().unwrap().clone();
        apply_record(&mut next, record);
        states.push(next);
    }
    states
}

fn open_journal(dir: &Path) -> (Journal, Vec<RecoveryProblem>) {
    Journal::open(dir, JournalOptions::default(), Storage::new()).expect("a damaged journal must still open")
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

// ---------------------------------------------------------------------------------------
// Incident-log segments

fn incident(kind: &str) -> Incident {
    Incident { kind: kind.into(), severity: IncidentSeverity::Warn, message: "m".into(), details: json!({ "k": kind }) }
}

fn open_log(dir: &Path) -> (IncidentLog, Vec<RecoveryProblem>) {
    IncidentLog::open(dir, IncidentLogOptions::default(), Storage::new()).expect("a damaged segment must still open")
}

/// Every record read back is well formed: sequence numbers strictly increase, kinds are
/// non-empty, details within the depth limit.
fn check_records(records: &[IncidentRecord]) {
    for pair in records.windows(2) {
        assert!(pair[0].seq < pair[1].seq, "sequence {} then {}", pair[0].seq, pair[1].seq);
    }
    for record in records {
        let details = serde_json::to_vec(&record.details).unwrap();
        assert!(json_depth(&details) < crate::durable::defaults::MAX_JSON_DEPTH, "{record:?}");
    }
}

/// A segment written by the log itself, with a fixed clock, and its records.
fn incident_original(root: &Path, name: &str, incidents: Vec<Incident>) -> (Vec<u8>, Vec<IncidentRecord>) {
    let dir = root.join(name);
    let options = IncidentLogOptions {
        rate_limit: RateLimit { max: u32::MAX, window_ms: 1 },
        clock: std::sync::Arc::new(|| 1_700_000_000_123),
        ..IncidentLogOptions::default()
    };
    let (log, _) = IncidentLog::open(&dir, options, Storage::new()).unwrap();
    for incident in incidents {
        log.record(incident).unwrap();
    }
    let records = log.read(&ReadFilter::default()).unwrap().records;
    drop(log);
    let bytes = fs::read(dir.join(verdict::SEGMENT_FILE)).unwrap_or_default();
    (bytes, records)
}

fn incident_originals(root: &Path) -> Vec<(Vec<u8>, Vec<IncidentRecord>)> {
    let make = |kind: &str, severity, message: &str, details| Incident {
        kind: kind.into(),
        severity,
        message: message.into(),
        details,
    };
    vec![
        incident_original(
            root,
            "a",
            vec![
                make("memory_pressure", IncidentSeverity::Warn, "gpu 0 at 93%", json!({ "gpu": 0, "ratio": 0.93 })),
                make("recovery_started", IncidentSeverity::Info, "memory", json!(null)),
                make("xid", IncidentSeverity::Critical, "Xid 79 on \"gpu\"\n1", json!({ "xid": 79, "d": [[], {}] })),
                make("recovery_finished", IncidentSeverity::Error, "é\u{1F600}", json!("done")),
            ],
        ),
        incident_original(
            root,
            "b",
            (0..12).map(|i| make("k", IncidentSeverity::Info, &format!("{i}"), json!(i))).collect(),
        ),
        incident_original(
            root,
            "c",
            vec![make("big", IncidentSeverity::Warn, &"x".repeat(700), json!({ "a": [1, 2, 3] }))],
        ),
    ]
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

// ---------------------------------------------------------------------------------------
// JSON-RPC messages

const RPC_CODES: [i64; 6] = [-32700, -32600, -32601, -32602, -32603, -32001];

/// What the dispatcher must answer to one element: `None` for a valid notification, else
/// the id to answer with and whether the Request object itself is invalid (-32600).
fn expected_answer(request: &Value) -> Option<(Value, bool)> {
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
fn check_response_object(response: &Value, id: &Value, invalid_request: Option<bool>) {
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
        }
        _ => panic!("neither result nor error: {response}"),
    }
}

/// The dispatcher's answer to `text` against an independent reading of the spec.
fn check_rpc_response(text: &str, limits: &RpcLimits, response: &Option<Value>) {
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

const METHODS: &[&str] = &[
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

fn random_string(rng: &mut Rng) -> String {
    let pieces = ["a", "é", "\u{1F600}", "\"", "\\", "\n", "\u{0}", "quick", "full", "gpu", " ", "\u{fffd}"];
    let n = if rng.one_in(20) { 100 + rng.below(300) } else { rng.below(6) };
    (0..n).map(|_| *rng.pick(&pieces)).collect()
}

fn random_json(rng: &mut Rng, depth: usize) -> Value {
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
fn tool_arguments(rng: &mut Rng, tool: &str) -> Value {
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

fn random_params(rng: &mut Rng, method: &str) -> Option<Value> {
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
fn valid_params(rng: &mut Rng, method: &str) -> Option<Value> {
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

fn random_request(rng: &mut Rng) -> Value {
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

fn random_message(rng: &mut Rng) -> String {
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
        let backend = AnsweringBackend { allow: i % 2 == 0 };
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

/// The size limit applies before parsing, to the byte; deep nesting within it is a parse
/// error (serde_json's recursion limit), never a stack overflow.
#[test]
fn json_rpc_size_and_depth_limits() {
    let limits = RpcLimits::default();
    let backend = AnsweringBackend { allow: false };
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

// ---------------------------------------------------------------------------------------
// The committed corpus

fn repo_dir(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn corpus_dir(target: &str) -> PathBuf {
    repo_dir("fuzz/corpus").join(target)
}

fn regressions_dir(target: &str) -> PathBuf {
    repo_dir("fuzz/regressions").join(target)
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.') && n != "README.md")
        .collect();
    names.sort();
    names
}

/// Every file in `dir` gets the verdict its name says: `ok-…` accepted, `bad-…` refused
/// (and nothing panics). Returns how many of each.
fn replay_named(dir: &Path, verdict: impl Fn(usize, &[u8]) -> bool) -> (usize, usize) {
    let (mut ok, mut bad) = (0, 0);
    for (i, name) in sorted_names(dir).iter().enumerate() {
        let bytes = fs::read(dir.join(name)).unwrap();
        let want = match name.split('-').next() {
            Some("ok") => true,
            Some("bad") => false,
            _ => panic!(
                "{}/{name}: names start with ok- or bad- (a file libFuzzer added? give `cargo fuzz run` a \
                 scratch corpus first, see fuzz/README.md)",
                dir.display()
            ),
        };
        let got = case(name, i, &bytes, || verdict(i, &bytes));
        assert_eq!(got, want, "{}/{name}: {}", dir.display(), if got { "accepted" } else { "refused" });
        *(if want { &mut ok } else { &mut bad }) += 1;
    }
    (ok, bad)
}

fn replay_corpus(target: &str, verdict: impl Fn(usize, &[u8]) -> bool) {
    let (ok, bad) = replay_named(&corpus_dir(target), verdict);
    assert!(ok >= 3 && bad >= 10, "{target}: only {ok} ok and {bad} bad corpus files");
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

// ---------------------------------------------------------------------------------------
// Writing the corpus

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

/// Writes `fuzz/corpus/<target>/`: the hand-made cases, then the smallest mutated input
/// for each distinct outcome the seeded mutations reached. Every file's verdict is checked
/// as it is written. Run after changing a decoder on purpose:
/// `HPC_HEALTH_WRITE_CORPUS=1 cargo test -p hpc_health --lib write_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus; set HPC_HEALTH_WRITE_CORPUS=1 and run with --ignored"]
fn write_corpus() {
    if std::env::var_os("HPC_HEALTH_WRITE_CORPUS").is_none() {
        return;
    }
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
