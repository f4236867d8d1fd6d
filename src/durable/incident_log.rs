//! The incident log: JSON Lines in segments, every record durable (fdatasync, shared by
//! concurrent callers: group commit, [`crate::durable::log`]'s engine) before `record`
//! returns its sequence number. Here: the line codec, rotation and retention, rate
//! limits, and the rules for reading back.
//!
//! The format and the rules for reading back are in [`super::format`].
//!
//! Each kind is rate limited: at most `rate_limit.max` records per `rate_limit.window_ms`;
//! the excess is counted, and once the window has passed (on the next record of that kind
//! or `flush_suppressed`) one summary record `"N suppressed"` is written.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{json, Value};

use super::defaults::{
    INCIDENT_MAX_BYTES, INCIDENT_MAX_SEGMENTS, INCIDENT_RATE_LIMIT_MAX, INCIDENT_RATE_LIMIT_WINDOW_MS,
    INCIDENT_SEGMENT_BYTES, MAX_INCIDENT_KIND_BYTES, MAX_INCIDENT_RECORD_BYTES, MAX_JSON_DEPTH, MAX_RATE_LIMITED_KINDS,
};
use super::fs::{
    classify, json_nesting_exceeds, open_state_dir, open_state_dir_read_only, parse_json, set_aside_foreign_file,
    AppendFile, DurableError, ForeignFile, ProblemKind, RecoveryProblem, Result, StateDir, Storage,
    ERR_INCIDENT_LOG_LOCKED, ERR_INVALID_ARGUMENT, ERR_INVALID_JSON, ERR_NOT_FOUND, ERR_TOO_LARGE,
};
use super::log::{Appended, GroupCommit, LogFiles, LogWriter, NewFile, Pending};
use crate::incident::{Incident, IncidentSeverity, IncidentSink};
use crate::sampling::unix_time_ms;
use crate::sync::lock;

const FILE_PREFIX: &str = "incidents-";
const FILE_SUFFIX: &str = ".jsonl";
/// Room for `{"seq":<20 digits>` ahead of the rest of a line.
const SEQ_PREFIX_MAX_BYTES: usize = 28;

/// Milliseconds since the Unix epoch; injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// At most `max` records of one kind per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub window_ms: u64,
}

/// Options of an incident log; defaults from [`super::defaults`].
#[derive(Clone)]
pub struct IncidentLogOptions {
    pub segment_bytes: u64,
    pub max_segments: usize,
    pub max_bytes: u64,
    pub rate_limit: RateLimit,
    pub clock: Clock,
}

impl Default for IncidentLogOptions {
    fn default() -> Self {
        IncidentLogOptions {
            segment_bytes: INCIDENT_SEGMENT_BYTES,
            max_segments: INCIDENT_MAX_SEGMENTS,
            max_bytes: INCIDENT_MAX_BYTES,
            rate_limit: RateLimit { max: INCIDENT_RATE_LIMIT_MAX, window_ms: INCIDENT_RATE_LIMIT_WINDOW_MS },
            clock: Arc::new(|| unix_time_ms() as u64),
        }
    }
}

impl fmt::Debug for IncidentLogOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncidentLogOptions")
            .field("segment_bytes", &self.segment_bytes)
            .field("max_segments", &self.max_segments)
            .field("max_bytes", &self.max_bytes)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

/// One record read back.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    pub seq: u64,
    pub timestamp_ms: u64,
    pub kind: String,
    pub severity: IncidentSeverity,
    pub message: String,
    pub details: Value,
}

/// What `record` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Durable on disk.
    Written { seq: u64, timestamp_ms: u64 },
    /// Over its kind's rate limit: counted, not written.
    RateLimited,
}

/// Which records `read` returns: all conditions hold. Oldest first; `limit` stops after
/// that many (so `since_seq = last seq + 1` pages forward).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadFilter {
    /// Only records with `seq >= since_seq`.
    pub since_seq: Option<u64>,
    /// Only records with `timestamp >= since_ms`.
    pub since_ms: Option<u64>,
    /// Only records of these kinds.
    pub kinds: Option<Vec<String>>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReadResult {
    pub records: Vec<IncidentRecord>,
    /// Bad lines met (skipped).
    pub problems: Vec<RecoveryProblem>,
}

/// The incident log in one locked directory.
pub struct IncidentLog {
    engine: GroupCommit<IncidentWriter>,
    /// The clock and the rate limit (the writer keeps the size options).
    options: IncidentLogOptions,
}

impl fmt::Debug for IncidentLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncidentLog")
            .field("dir", &self.writer().files.dir.path())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The log's side of the engine: its files and segments.
struct IncidentWriter {
    files: LogFiles,
    segment_bytes: u64,
    max_segments: usize,
    max_bytes: u64,
    /// Locked for the whole of a commit; reads take it for a consistent view.
    segments: Mutex<Segments>,
}

/// A line waiting to be written. The sequence number is given at write time, so a failed
/// write leaves no gap.
struct Line {
    timestamp_ms: u64,
    /// The line after `{"seq":N`.
    tail: String,
}

struct RateWindow {
    started_ms: u64,
    count: u32,
    suppressed: u64,
}

struct Segments {
    next_seq: u64,
    /// The newest segment, open for appending; `None` when the next write must start a
    /// new segment (none yet, or the last append failed).
    current: Option<AppendFile>,
    /// Segments on disk: first sequence number → durable size.
    sizes: BTreeMap<u64, u64>,
}

impl IncidentLog {
    /// Opens (creating) the log in `dir`, locked (`ERR_INCIDENT_LOG_LOCKED` for a second
    /// open), repairing a torn tail of the newest segment. Returns the problems found.
    pub fn open(dir: &Path, options: IncidentLogOptions, storage: Storage) -> Result<(Self, Vec<RecoveryProblem>)> {
        check_options(&options)?;
        let dir = Arc::new(open_state_dir(dir, ERR_INCIDENT_LOG_LOCKED)?);
        let (files, mut problems) = LogFiles::open(storage, dir, FILE_PREFIX, FILE_SUFFIX, "incident segment", true)?;
        let mut writer = IncidentWriter {
            files,
            segment_bytes: options.segment_bytes,
            max_segments: options.max_segments,
            max_bytes: options.max_bytes,
            segments: Mutex::new(Segments { next_seq: 1, current: None, sizes: BTreeMap::new() }),
        };
        let mut segments = writer.recover(&mut problems)?;
        writer.apply_retention(&mut segments);
        writer.segments = Mutex::new(segments);
        let engine = GroupCommit::start("hpc-health-incidents", writer, HashMap::new())?;
        Ok((IncidentLog { engine, options }, problems))
    }

    fn writer(&self) -> &IncidentWriter {
        self.engine.writer()
    }

    pub fn is_degraded(&self) -> bool {
        self.writer().files.storage.is_degraded()
    }

    /// Writes `incident` durably and returns its sequence number and timestamp, or
    /// `RateLimited`. `ERR_INVALID_ARGUMENT` (kind empty or over 128 bytes),
    /// `ERR_INVALID_JSON` (details too deep), `ERR_TOO_LARGE`, `ERR_PERSIST_FAILED`.
    pub fn record(&self, incident: Incident) -> Result<RecordOutcome> {
        self.queue_record(incident)?.wait()
    }

    /// As [`record`](Self::record) without blocking: checks the incident and its rate
    /// limit and queues it (errors of the incident come back here); returns what settles
    /// once it is durable (at once for `RateLimited`).
    pub fn queue_record(&self, incident: Incident) -> Result<Pending<RecordOutcome>> {
        let Incident { kind, severity, message, details } = incident;
        if kind.is_empty() || kind.len() > MAX_INCIDENT_KIND_BYTES {
            return Err(DurableError::new(
                ERR_INVALID_ARGUMENT,
                format!("incident kinds must be 1 to {MAX_INCIDENT_KIND_BYTES} bytes (got {})", kind.len()),
            ));
        }
        let now = (self.options.clock)();
        let tail = line_tail(now, &kind, severity, &message, &details)?;
        let window_ms = self.options.rate_limit.window_ms;
        let pending = self.engine.queue(|inbox| {
            let windows = &mut inbox.admission;
            let window = windows.entry(kind.clone()).or_insert(RateWindow { started_ms: now, count: 0, suppressed: 0 });
            let mut rolled_over_suppressed = 0;
            if now.saturating_sub(window.started_ms) >= window_ms {
                rolled_over_suppressed = window.suppressed;
                *window = RateWindow { started_ms: now, count: 0, suppressed: 0 };
            }
            if window.count >= self.options.rate_limit.max {
                window.suppressed += 1;
                return None;
            }
            window.count += 1;
            forget_idle_windows(windows, now, window_ms);
            if rolled_over_suppressed > 0 {
                let summary = suppressed_summary(now, &kind, rolled_over_suppressed);
                inbox.push_unawaited(Line { timestamp_ms: now, tail: summary });
            }
            Some(inbox.push(Line { timestamp_ms: now, tail }))
        });
        Ok(pending.unwrap_or_else(|| Pending::settled(Ok(RecordOutcome::RateLimited))))
    }

    /// Writes the summary records of kinds whose rate-limit window has passed with records
    /// suppressed. Returns how many were written.
    pub fn flush_suppressed(&self) -> Result<usize> {
        let now = (self.options.clock)();
        let window_ms = self.options.rate_limit.window_ms;
        let pending: Vec<Pending<RecordOutcome>> = self.engine.queue(|inbox| {
            let mut passed: Vec<(String, u64)> = Vec::new();
            inbox.admission.retain(|kind, window| {
                if now.saturating_sub(window.started_ms) < window_ms {
                    return true;
                }
                if window.suppressed > 0 {
                    passed.push((kind.clone(), window.suppressed));
                }
                false
            });
            passed.sort();
            passed
                .iter()
                .map(|(kind, suppressed)| {
                    inbox.push(Line { timestamp_ms: now, tail: suppressed_summary(now, kind, *suppressed) })
                })
                .collect()
        });
        // Collect every outcome (none left behind), then report the first failure.
        let outcomes: Vec<Result<RecordOutcome>> = pending.into_iter().map(Pending::wait).collect();
        outcomes.into_iter().try_fold(0, |written, outcome| outcome.map(|_| written + 1))
    }

    /// Records matching `filter`, oldest first, and the bad lines met on the way.
    pub fn read(&self, filter: &ReadFilter) -> Result<ReadResult> {
        let writer = self.writer();
        // A consistent view: the segments and the durable length of the newest (bytes
        // past it may be a write in progress).
        let (segments, current_len) = {
            let segments = lock(&writer.segments);
            let current_len = segments.current.as_ref().map(|file| file.len());
            (segments.sizes.keys().copied().collect::<Vec<u64>>(), current_len)
        };
        read_segments(&writer.files.storage, &writer.files.dir, &segments, current_len, writer.read_limit(), filter)
    }

    /// Reads the log in `dir` without opening it: no lock is taken and nothing is
    /// written, so this works while a service has the log open (`hpc-health incidents`,
    /// the report). The newest segment's incomplete last line is an append in flight,
    /// left out and not reported; other bad lines are skipped and reported as by
    /// [`read`](Self::read). `ERR_NOT_FOUND` when `dir` does not exist.
    pub fn read_unlocked(dir: &Path, filter: &ReadFilter) -> Result<ReadResult> {
        let dir = open_state_dir_read_only(dir)?;
        let mut segments: Vec<u64> =
            dir.list()?.iter().filter_map(|e| classify(e, FILE_PREFIX, FILE_SUFFIX).ours()).collect();
        segments.sort_unstable();
        let mut result = read_segments(&Storage::new(), &dir, &segments, None, UNLOCKED_READ_LIMIT, filter)?;
        let newest = segments.last().map(|&n| segment_name(n));
        result.problems.retain(|p| !(p.kind == ProblemKind::TornTail && Some(&p.file) == newest.as_ref()));
        Ok(result)
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        lock(&self.writer().segments).next_seq
    }
}

impl LogWriter for IncidentWriter {
    type Entry = Line;
    type Ack = RecordOutcome;
    /// The rate-limit window of each kind.
    type Admission = HashMap<String, RateWindow>;

    /// At least one line; more while they fit in a segment, so segments stay near
    /// `segment_bytes` even under a burst.
    fn batch_len(&self, queued: &[Line]) -> usize {
        let mut batch_bytes = 0u64;
        queued
            .iter()
            .take_while(|line| {
                batch_bytes += line.tail.len() as u64;
                batch_bytes <= self.segment_bytes
            })
            .count()
    }

    fn commit(&self, batch: Vec<Line>) -> Result<Vec<RecordOutcome>> {
        let mut segments = lock(&self.segments);
        let first_seq = segments.next_seq;
        let last_seq = first_seq + batch.len() as u64 - 1;
        if last_seq > MAX_SEQ {
            return Err(DurableError::new(
                ERR_INVALID_ARGUMENT,
                format!("incident sequence numbers are exhausted at {MAX_SEQ}"),
            ));
        }
        let mut bytes = Vec::new();
        for (i, line) in batch.iter().enumerate() {
            bytes.extend_from_slice(format!("{{\"seq\":{}", first_seq + i as u64).as_bytes());
            bytes.extend_from_slice(line.tail.as_bytes());
        }
        self.append(&mut segments, first_seq, &bytes)?;
        segments.next_seq = last_seq + 1;
        Ok(batch
            .iter()
            .enumerate()
            .map(|(i, line)| RecordOutcome::Written { seq: first_seq + i as u64, timestamp_ms: line.timestamp_ms })
            .collect())
    }
}

impl IncidentWriter {
    /// A segment is below `segment_bytes` before an append, and a batch is at most
    /// `segment_bytes` or one record: anything larger is not ours.
    fn read_limit(&self) -> u64 {
        2 * self.segment_bytes + MAX_INCIDENT_RECORD_BYTES as u64
    }

    /// Appends a batch to the newest segment, or starts a new one with it: when there is
    /// none, the newest is full, or the append failed (then as its one rewrite).
    fn append(&self, segments: &mut Segments, first_seq: u64, bytes: &[u8]) -> Result<()> {
        if segments.current.as_ref().is_none_or(|file| file.len() >= self.segment_bytes) {
            return self.start_segment(segments, first_seq, bytes, NewFile::WithRetry);
        }
        match self.files.append(&mut segments.current, bytes) {
            Appended::InPlace => {
                let len = segments.current.as_ref().map_or(0, AppendFile::len);
                if let Some(size) = segments.sizes.values_mut().next_back() {
                    *size = len;
                }
                // Total bytes grow with every append, not only at rotation.
                self.apply_retention(segments);
                Ok(())
            }
            // The new segment alone holds these records.
            Appended::Failed(e) => self.start_segment(segments, first_seq, bytes, NewFile::RetryOf(&e)),
        }
    }

    /// Writes `bytes` as a new segment named for `first_seq` (whole-file protocol, so a
    /// segment never exists half-written), switches to it and applies retention.
    fn start_segment(&self, segments: &mut Segments, first_seq: u64, bytes: &[u8], mode: NewFile<'_>) -> Result<()> {
        self.files.write_new(first_seq, bytes, mode)?;
        let file = self.files.open_file(first_seq)?;
        segments.sizes.insert(first_seq, file.len());
        segments.current = Some(file);
        self.apply_retention(segments);
        Ok(())
    }

    /// Deletes the oldest segments beyond `max_segments` or `max_bytes` (never the newest).
    fn apply_retention(&self, segments: &mut Segments) {
        let mut total: u64 = segments.sizes.values().sum();
        let mut doomed = Vec::new();
        while segments.sizes.len() > 1 && (segments.sizes.len() > self.max_segments || total > self.max_bytes) {
            let (first_seq, size) = segments.sizes.pop_first().expect("more than one segment");
            total -= size;
            doomed.push(first_seq);
        }
        self.files.remove(doomed);
    }

    /// Lists the segments, repairs the newest one's tail and finds the next sequence number.
    fn recover(&self, problems: &mut Vec<RecoveryProblem>) -> Result<Segments> {
        let mut sizes = BTreeMap::new();
        for entry in self.files.dir.list()? {
            // A segment gone or replaced since the listing is not one to count on.
            if let (Some(first_seq), Some(size)) = (self.files.number(&entry), self.files.dir.file_len(&entry.name)) {
                sizes.insert(first_seq, size);
            }
        }
        let mut segments = Segments { next_seq: 1, current: None, sizes };
        let Some((first_seq, scan)) = self.newest_vouched_segment(&mut segments.sizes, problems)? else {
            return Ok(segments);
        };
        let name = self.files.name(first_seq);
        problems.extend(scan.problems(&name));
        segments.next_seq = scan.records.iter().map(|(_, r)| r.seq + 1).max().unwrap_or(0).max(first_seq);
        let mut file = self.files.open_file(first_seq)?;
        if (scan.valid_len as u64) < file.len() {
            if let Some(torn) = problems.iter_mut().find(|p| p.kind == ProblemKind::TornTail) {
                torn.reason.push_str("; truncated");
            }
            match file.truncate_to(&self.files.storage, scan.valid_len as u64) {
                Ok(()) => segments.current = Some(file),
                Err(e) => {
                    // Leave it; the next record starts a new segment instead.
                    problems.push(RecoveryProblem {
                        kind: ProblemKind::TornTail,
                        file: name.clone(),
                        offset: scan.valid_len as u64,
                        reason: format!("could not truncate: {e}"),
                        set_aside_as: None,
                    });
                }
            }
        } else {
            segments.current = Some(file);
        }
        if segments.current.is_some() {
            segments.sizes.insert(first_seq, scan.valid_len as u64);
        }
        Ok(segments)
    }

    /// The newest segment and its scan, setting aside (from `sizes` and the directory)
    /// newer ones that hold no intact record: this log writes a segment's first batch
    /// whole, so each of its segments starts with a record. An empty or garbage file under
    /// a segment name (`incidents-00009007199254740991.jsonl`) is not counted on from.
    fn newest_vouched_segment(
        &self,
        sizes: &mut BTreeMap<u64, u64>,
        problems: &mut Vec<RecoveryProblem>,
    ) -> Result<Option<(u64, SegmentScan)>> {
        while let Some((&first_seq, _)) = sizes.last_key_value() {
            let name = self.files.name(first_seq);
            let scan = scan_segment(&self.files.storage.read_bounded(&self.files.dir, &name, self.read_limit())?);
            // A lone first segment counts on from 1 whatever it holds: nothing is skipped.
            if !scan.records.is_empty() || (first_seq == 1 && sizes.len() == 1) {
                return Ok(Some((first_seq, scan)));
            }
            sizes.remove(&first_seq);
            let reason = format!("{name} holds no intact record, so this log did not write it; not counted on from");
            let aside = set_aside_foreign_file(&self.files.storage, &self.files.dir, name, FILE_PREFIX, reason);
            problems.push(aside.into_problem());
        }
        Ok(None)
    }
}

impl IncidentSink for IncidentLog {
    /// Returns the sequence number; 0 when the record was rate limited (not written).
    fn record(&self, incident: Incident) -> std::result::Result<u64, String> {
        match IncidentLog::record(self, incident) {
            Ok(RecordOutcome::Written { seq, .. }) => Ok(seq),
            Ok(RecordOutcome::RateLimited) => Ok(0),
            Err(e) => Err(format!("{}: {}", e.code, e.message)),
        }
    }
}

fn check_options(options: &IncidentLogOptions) -> Result<()> {
    let problem = if options.segment_bytes == 0 {
        "segment_bytes must be at least 1"
    } else if options.max_segments == 0 {
        "max_segments must be at least 1"
    } else if options.max_bytes < options.segment_bytes {
        "max_bytes must be at least segment_bytes"
    } else if options.rate_limit.max == 0 {
        "rate_limit.max must be at least 1"
    } else if options.rate_limit.window_ms == 0 {
        "rate_limit.window_ms must be at least 1"
    } else {
        return Ok(());
    };
    Err(DurableError::new(ERR_INVALID_ARGUMENT, format!("incident log options: {problem} ({options:?})")))
}

/// Everything of a line after `{"seq":N`, checked for size and depth.
fn line_tail(
    timestamp_ms: u64,
    kind: &str,
    severity: IncidentSeverity,
    message: &str,
    details: &Value,
) -> Result<String> {
    let details = serde_json::to_string(details).expect("JSON values serialize");
    // The line wraps details in one more level.
    if json_nesting_exceeds(details.as_bytes(), MAX_JSON_DEPTH - 1) {
        return Err(DurableError::new(
            ERR_INVALID_JSON,
            format!("incident details nest deeper than {} levels", MAX_JSON_DEPTH - 1),
        ));
    }
    let text = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let tail = format!(
        ",\"timestamp\":{timestamp_ms},\"kind\":{},\"severity\":\"{}\",\"message\":{},\"details\":{details}}}\n",
        text(kind),
        severity.as_str(),
        text(message),
    );
    if tail.len() + SEQ_PREFIX_MAX_BYTES > MAX_INCIDENT_RECORD_BYTES {
        return Err(DurableError::new(
            ERR_TOO_LARGE,
            format!(
                "incident record of {} bytes is over the limit of {MAX_INCIDENT_RECORD_BYTES}",
                tail.len() + SEQ_PREFIX_MAX_BYTES
            ),
        ));
    }
    Ok(tail)
}

fn suppressed_summary(now: u64, kind: &str, suppressed: u64) -> String {
    let details = json!({ "suppressed": suppressed, "kind": kind });
    line_tail(now, kind, IncidentSeverity::Warn, &format!("{suppressed} suppressed"), &details)
        .expect("summaries are small and shallow")
}

/// Keeps the rate-limit table bounded: kinds are caller-chosen strings.
fn forget_idle_windows(windows: &mut HashMap<String, RateWindow>, now: u64, window_ms: u64) {
    if windows.len() > MAX_RATE_LIMITED_KINDS {
        windows.retain(|_, w| w.suppressed > 0 || now.saturating_sub(w.started_ms) < window_ms);
    }
}

fn matches(filter: &ReadFilter, record: &IncidentRecord) -> bool {
    filter.since_seq.is_none_or(|since| record.seq >= since)
        && filter.since_ms.is_none_or(|since| record.timestamp_ms >= since)
        && filter.kinds.as_ref().is_none_or(|kinds| kinds.contains(&record.kind))
}

/// The largest segment [`IncidentLog::read_unlocked`] reads (it does not know the
/// writer's segment size).
const UNLOCKED_READ_LIMIT: u64 = 64 << 20;

/// The records of `segments` (first sequence numbers, ascending) in `dir` matching
/// `filter`; the newest read only up to `current_len` where given (bytes past it may be
/// a write in progress).
fn read_segments(
    storage: &Storage,
    dir: &StateDir,
    segments: &[u64],
    current_len: Option<u64>,
    read_limit: u64,
    filter: &ReadFilter,
) -> Result<ReadResult> {
    let mut result = ReadResult { records: Vec::new(), problems: Vec::new() };
    let mut last_seq = 0;
    for (i, &first_seq) in segments.iter().enumerate() {
        let next_first = segments.get(i + 1).copied();
        if let (Some(since), Some(next)) = (filter.since_seq, next_first) {
            if next <= since {
                continue; // every record here is older than `since`
            }
        }
        let name = segment_name(first_seq);
        let mut bytes = match storage.read_bounded(dir, &name, read_limit) {
            Ok(bytes) => bytes,
            Err(e) if e.code == ERR_NOT_FOUND => continue, // removed by retention meanwhile
            // Replaced since (by a symlink, a FIFO…): not ours any more; the rest is.
            Err(e) if dir.file_len(&name).is_none() => {
                let reason = format!("{} (not read)", e.message);
                let foreign = ForeignFile { name: name.clone(), reason, set_aside_as: None };
                result.problems.push(foreign.into_problem());
                continue;
            }
            Err(e) => return Err(e),
        };
        if next_first.is_none() {
            if let Some(len) = current_len {
                bytes.truncate(len as usize);
            }
        }
        let scan = scan_segment(&bytes);
        result.problems.extend(scan.problems(&name));
        for (offset, record) in scan.records {
            if record.seq <= last_seq {
                result.problems.push(RecoveryProblem {
                    kind: ProblemKind::InconsistentRecord,
                    file: name.clone(),
                    offset,
                    reason: format!("sequence {} after {last_seq}; skipped", record.seq),
                    set_aside_as: None,
                });
                continue;
            }
            last_seq = record.seq;
            if matches(filter, &record) {
                result.records.push(record);
                if filter.limit.is_some_and(|limit| result.records.len() >= limit) {
                    return Ok(result);
                }
            }
        }
    }
    Ok(result)
}

fn segment_name(first_seq: u64) -> String {
    format!("{FILE_PREFIX}{first_seq:020}{FILE_SUFFIX}")
}

/// The largest sequence number the log hands out or accepts (the bound of every durable
/// sequence number).
pub const MAX_SEQ: u64 = super::defaults::MAX_SEQUENCE;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredLine {
    seq: u64,
    timestamp: u64,
    kind: String,
    severity: String,
    message: String,
    details: Value,
}

fn parse_line(line: &[u8]) -> std::result::Result<IncidentRecord, String> {
    let stored: StoredLine = parse_json(line, MAX_JSON_DEPTH)?;
    let severity =
        IncidentSeverity::parse(&stored.severity).ok_or_else(|| format!("unknown severity {:?}", stored.severity))?;
    if stored.seq > MAX_SEQ {
        return Err(format!("sequence number {} is beyond {MAX_SEQ}", stored.seq));
    }
    Ok(IncidentRecord {
        seq: stored.seq,
        timestamp_ms: stored.timestamp,
        kind: stored.kind,
        severity,
        message: stored.message,
        details: stored.details,
    })
}

struct SegmentScan {
    /// Good records with their byte offsets.
    records: Vec<(u64, IncidentRecord)>,
    /// Bad lines (offset, reason), including an incomplete last one.
    bad: Vec<(u64, String)>,
    /// End of the last good line: everything after it is a torn tail.
    valid_len: usize,
}

impl SegmentScan {
    /// Bad lines before the last good one were skipped (mid-file); those after it are
    /// the torn tail, reported once.
    fn problems(&self, file: &str) -> Vec<RecoveryProblem> {
        let mut problems: Vec<RecoveryProblem> = self
            .bad
            .iter()
            .filter(|(offset, _)| *offset < self.valid_len as u64)
            .map(|(offset, reason)| RecoveryProblem {
                kind: ProblemKind::MidFileCorruption,
                file: file.to_string(),
                offset: *offset,
                reason: format!("bad line skipped: {reason}"),
                set_aside_as: None,
            })
            .collect();
        if let Some((_, reason)) = self.bad.iter().find(|(offset, _)| *offset >= self.valid_len as u64) {
            problems.push(RecoveryProblem {
                kind: ProblemKind::TornTail,
                file: file.to_string(),
                offset: self.valid_len as u64,
                reason: reason.clone(),
                set_aside_as: None,
            });
        }
        problems
    }
}

fn scan_segment(bytes: &[u8]) -> SegmentScan {
    let mut scan = SegmentScan { records: Vec::new(), bad: Vec::new(), valid_len: 0 };
    let mut at = 0;
    while at < bytes.len() {
        let Some(newline) = bytes[at..].iter().position(|&b| b == b'\n').map(|i| at + i) else {
            scan.bad.push((at as u64, format!("incomplete last line ({} bytes, no newline)", bytes.len() - at)));
            break;
        };
        match parse_line(&bytes[at..newline]) {
            Ok(record) => {
                scan.records.push((at as u64, record));
                scan.valid_len = newline + 1;
            }
            Err(reason) => scan.bad.push((at as u64, reason)),
        }
        at = newline + 1;
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::fs::test_support::{mkfifo, names_in, swap_for_symlink};
    use crate::durable::fs::{FaultPlan, IoOp, ERR_PERSIST_FAILED, TEMP_PREFIX};
    use std::fs;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    struct ManualClock(Arc<AtomicU64>);

    impl ManualClock {
        fn new(start: u64) -> (ManualClock, Clock) {
            let now = Arc::new(AtomicU64::new(start));
            let reader = now.clone();
            (ManualClock(now), Arc::new(move || reader.load(Ordering::SeqCst)))
        }

        fn advance(&self, ms: u64) {
            self.0.fetch_add(ms, Ordering::SeqCst);
        }
    }

    fn new_dir() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("incidents");
        (root, dir)
    }

    fn open(dir: &Path, options: IncidentLogOptions) -> (IncidentLog, Vec<RecoveryProblem>) {
        IncidentLog::open(dir, options, Storage::new()).unwrap()
    }

    fn incident(kind: &str, message: &str) -> Incident {
        Incident {
            kind: kind.into(),
            severity: IncidentSeverity::Warn,
            message: message.into(),
            details: json!({"m": message}),
        }
    }

    fn seq_of(outcome: RecordOutcome) -> u64 {
        match outcome {
            RecordOutcome::Written { seq, .. } => seq,
            RecordOutcome::RateLimited => panic!("rate limited"),
        }
    }

    fn all(log: &IncidentLog) -> Vec<IncidentRecord> {
        let result = log.read(&ReadFilter::default()).unwrap();
        assert!(result.problems.is_empty(), "{:?}", result.problems);
        result.records
    }

    fn segments(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(FILE_PREFIX))
            .collect();
        names.sort();
        names
    }

    /// The log can be read while it is open (and locked) for writing: the same records as
    /// its own `read`, an append in flight (an incomplete last line) left out unreported,
    /// a bad line before good ones reported; nothing created, nothing locked.
    #[test]
    fn read_unlocked_reads_a_log_open_for_writing() {
        let (_root, dir) = new_dir();
        assert_eq!(IncidentLog::read_unlocked(&dir, &ReadFilter::default()).unwrap_err().code, ERR_NOT_FOUND);
        assert!(!dir.exists(), "a reader creates nothing");
        let options = IncidentLogOptions { segment_bytes: 300, ..Default::default() };
        let (log, _) = open(&dir, options);
        for i in 0..8 {
            seq_of(log.record(incident("k", &format!("m{i}"))).unwrap());
        }
        assert!(segments(&dir).len() > 1, "several segments");
        let unlocked = IncidentLog::read_unlocked(&dir, &ReadFilter::default()).unwrap();
        assert_eq!(unlocked.records, all(&log));
        assert!(unlocked.problems.is_empty());
        let filter = ReadFilter { since_seq: Some(6), ..Default::default() };
        let seqs: Vec<u64> = IncidentLog::read_unlocked(&dir, &filter).unwrap().records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [6, 7, 8]);

        // An append in flight at the end of the newest segment.
        let newest = dir.join(segments(&dir).last().unwrap());
        fs::OpenOptions::new().append(true).open(&newest).unwrap().write_all(b"{\"seq\":9,\"time").unwrap();
        let unlocked = IncidentLog::read_unlocked(&dir, &ReadFilter::default()).unwrap();
        assert_eq!(unlocked.records.len(), 8);
        assert!(unlocked.problems.is_empty(), "{:?}", unlocked.problems);
        // Damage in an older segment is reported.
        let oldest = dir.join(&segments(&dir)[0]);
        let mut bytes = fs::read(&oldest).unwrap();
        bytes.splice(0..0, b"not json\n".iter().copied());
        fs::write(&oldest, bytes).unwrap();
        let unlocked = IncidentLog::read_unlocked(&dir, &ReadFilter::default()).unwrap();
        assert_eq!(unlocked.records.len(), 8);
        assert_eq!(unlocked.problems.len(), 1);
        assert_eq!(unlocked.problems[0].kind, ProblemKind::MidFileCorruption);
        // The writer's lock still holds against writers.
        assert_eq!(
            IncidentLog::open(&dir, IncidentLogOptions::default(), Storage::new()).err().unwrap().code,
            ERR_INCIDENT_LOG_LOCKED
        );
    }

    #[test]
    fn round_trip_and_line_format() {
        let (_root, dir) = new_dir();
        let (clock, now) = ManualClock::new(1_700_000_000_000);
        let (log, problems) = open(&dir, IncidentLogOptions { clock: now, ..Default::default() });
        assert!(problems.is_empty());
        let outcome = log
            .record(Incident {
                kind: "gpu_xid".into(),
                severity: IncidentSeverity::Critical,
                message: "Xid 79\n".into(),
                details: json!({"gpu": 0}),
            })
            .unwrap();
        assert_eq!(outcome, RecordOutcome::Written { seq: 1, timestamp_ms: 1_700_000_000_000 });
        clock.advance(5);
        assert_eq!(seq_of(log.record(incident("memory_pressure", "high")).unwrap()), 2);

        let records = all(&log);
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0],
            IncidentRecord {
                seq: 1,
                timestamp_ms: 1_700_000_000_000,
                kind: "gpu_xid".into(),
                severity: IncidentSeverity::Critical,
                message: "Xid 79\n".into(),
                details: json!({"gpu": 0}),
            }
        );
        assert_eq!(records[1].timestamp_ms, 1_700_000_000_005);
        let text = fs::read_to_string(dir.join(segment_name(1))).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"seq":1,"timestamp":1700000000000,"kind":"gpu_xid","severity":"critical","message":"Xid 79\n","details":{"gpu":0}}"#
        );
    }

    #[test]
    fn sequence_numbers_continue_after_reopen() {
        let (_root, dir) = new_dir();
        let (log, _) = open(&dir, Default::default());
        for i in 1..=3 {
            assert_eq!(seq_of(log.record(incident("k", "m")).unwrap()), i);
        }
        drop(log);
        let (log, problems) = open(&dir, Default::default());
        assert!(problems.is_empty());
        assert_eq!(log.next_seq(), 4);
        assert_eq!(seq_of(log.record(incident("k", "m")).unwrap()), 4);
        assert_eq!(all(&log).iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    }

    #[test]
    fn rotation_and_retention() {
        let (_root, dir) = new_dir();
        let options =
            || IncidentLogOptions { segment_bytes: 300, max_segments: 3, max_bytes: 100_000, ..Default::default() };
        let (log, _) = open(&dir, options());
        for i in 1..=5 {
            assert_eq!(seq_of(log.record(incident("k", &format!("message {i}"))).unwrap()), i);
        }
        // Each line is ~120 bytes: a segment closes after its third line.
        assert_eq!(segments(&dir), [segment_name(1), segment_name(4)]);
        for i in 6..=20 {
            log.record(incident(&format!("k{i}"), "m")).unwrap();
        }
        let names = segments(&dir);
        assert_eq!(names.len(), 3, "{names:?}");
        let records = all(&log);
        assert_eq!(records.last().unwrap().seq, 20);
        assert_eq!(records.first().unwrap().seq, names[0][FILE_PREFIX.len()..][..20].parse::<u64>().unwrap());
        assert!(records.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        drop(log);

        // Total bytes: at most ~2 segments' worth.
        let (log, _) = open(
            &dir,
            IncidentLogOptions { segment_bytes: 300, max_segments: 10, max_bytes: 700, ..Default::default() },
        );
        for _ in 0..10 {
            log.record(incident("k", "m")).unwrap();
        }
        let total: u64 = segments(&dir).iter().map(|n| fs::metadata(dir.join(n)).unwrap().len()).sum();
        assert!(total <= 700, "{total}");
        assert_eq!(all(&log).last().unwrap().seq, 30);
    }

    #[test]
    fn rate_limit_counts_and_summarizes() {
        let (_root, dir) = new_dir();
        let (clock, now) = ManualClock::new(10_000);
        let options =
            IncidentLogOptions { rate_limit: RateLimit { max: 3, window_ms: 1000 }, clock: now, ..Default::default() };
        let (log, _) = open(&dir, options);
        let outcomes: Vec<RecordOutcome> = (0..5).map(|_| log.record(incident("noisy", "again")).unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == RecordOutcome::RateLimited).count(), 2);
        assert_eq!(seq_of(log.record(incident("quiet", "once")).unwrap()), 4, "other kinds unaffected");
        for _ in 0..4 {
            log.record(incident("other", "x")).unwrap(); // one suppressed
        }
        clock.advance(999);
        assert_eq!(log.record(incident("noisy", "x")).unwrap(), RecordOutcome::RateLimited, "window not over");
        clock.advance(1);
        // The window rolled over: the summary (3 suppressed) goes first, then this record.
        let seq = seq_of(log.record(incident("noisy", "after")).unwrap());
        let records = all(&log);
        let summary = records.iter().find(|r| r.message == "3 suppressed").expect("summary");
        assert_eq!(summary.kind, "noisy");
        assert_eq!(summary.details, json!({"suppressed": 3, "kind": "noisy"}));
        assert_eq!(summary.seq + 1, seq);

        // `other` only gets its summary on flush (or its next record).
        assert_eq!(log.flush_suppressed().unwrap(), 1);
        assert_eq!(log.flush_suppressed().unwrap(), 0);
        let records = all(&log);
        let last = records.last().unwrap();
        assert_eq!((last.kind.as_str(), last.message.as_str()), ("other", "1 suppressed"));
        assert_eq!(last.details, json!({"suppressed": 1, "kind": "other"}));
    }

    #[test]
    fn read_filters() {
        let (_root, dir) = new_dir();
        let (clock, now) = ManualClock::new(1000);
        let (log, _) = open(&dir, IncidentLogOptions { clock: now, segment_bytes: 250, ..Default::default() });
        for i in 0..10 {
            log.record(incident(if i % 2 == 0 { "even" } else { "odd" }, &i.to_string())).unwrap();
            clock.advance(10);
        }
        let read = |filter: ReadFilter| log.read(&filter).unwrap().records.iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(read(ReadFilter::default()), (1..=10).collect::<Vec<_>>());
        assert_eq!(read(ReadFilter { since_seq: Some(8), ..Default::default() }), [8, 9, 10]);
        assert_eq!(read(ReadFilter { since_ms: Some(1050), ..Default::default() }), [6, 7, 8, 9, 10]);
        assert_eq!(read(ReadFilter { kinds: Some(vec!["odd".into()]), ..Default::default() }), [2, 4, 6, 8, 10]);
        assert_eq!(read(ReadFilter { limit: Some(3), since_seq: Some(4), ..Default::default() }), [4, 5, 6]);
        assert_eq!(
            read(ReadFilter {
                kinds: Some(vec!["even".into(), "none".into()]),
                since_seq: Some(2),
                limit: Some(2),
                ..Default::default()
            }),
            [3, 5]
        );
        assert!(segments(&dir).len() > 2, "filters cross segments");
    }

    #[test]
    fn torn_tail_is_repaired() {
        for (case, garbage) in [
            ("incomplete line", &b"{\"seq\":4,\"timest"[..]),
            ("unparsable last line", &b"{\"seq\":4 garbage}\n"[..]),
            ("two bad lines", &b"not json\n{\"seq\":4,\n"[..]),
            (
                "missing newline",
                &b"{\"seq\":4,\"timestamp\":1,\"kind\":\"k\",\"severity\":\"warn\",\"message\":\"m\",\"details\":null}"
                    [..],
            ),
        ] {
            let (_root, dir) = new_dir();
            let (log, _) = open(&dir, Default::default());
            for _ in 0..3 {
                log.record(incident("k", "m")).unwrap();
            }
            drop(log);
            let path = dir.join(segment_name(1));
            let good_len = fs::metadata(&path).unwrap().len();
            fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(garbage).unwrap();

            let (log, problems) = open(&dir, Default::default());
            assert_eq!(problems.len(), 1, "{case}: {problems:?}");
            assert_eq!(problems[0].kind, ProblemKind::TornTail, "{case}");
            assert_eq!(problems[0].offset, good_len, "{case}");
            assert_eq!(fs::metadata(&path).unwrap().len(), good_len, "{case}: truncated");
            assert_eq!(seq_of(log.record(incident("k", "m")).unwrap()), 4, "{case}");
            assert_eq!(all(&log).len(), 4, "{case}");
        }
    }

    #[test]
    fn bad_line_in_the_middle_is_reported_and_skipped() {
        let (_root, dir) = new_dir();
        let (log, _) = open(&dir, Default::default());
        log.record(incident("k", "one")).unwrap();
        drop(log);
        let path = dir.join(segment_name(1));
        let bad_at = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"seq\":2,\"oops\n").unwrap();
        let (log, problems) = open(&dir, Default::default());
        // The bad line is the tail now; a good line after it makes it mid-file.
        assert_eq!(problems.len(), 1);
        drop(log);
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"seq\":2,\"oops\n").unwrap();
        let good = r#"{"seq":3,"timestamp":5,"kind":"k","severity":"info","message":"three","details":null}"#;
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(format!("{good}\n").as_bytes()).unwrap();

        let (log, problems) = open(&dir, Default::default());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, ProblemKind::MidFileCorruption);
        assert_eq!(problems[0].offset, bad_at);
        assert_eq!(seq_of(log.record(incident("k", "four")).unwrap()), 4);
        let result = log.read(&ReadFilter::default()).unwrap();
        assert_eq!(result.records.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(), ["one", "three", "four"]);
        assert_eq!(result.problems.len(), 1, "reads report it too");
        assert_eq!(result.problems[0].offset, bad_at);
    }

    #[test]
    fn locked_and_argument_errors() {
        let (_root, dir) = new_dir();
        let (log, _) = open(&dir, Default::default());
        assert_eq!(
            IncidentLog::open(&dir, Default::default(), Storage::new()).unwrap_err().code,
            ERR_INCIDENT_LOG_LOCKED
        );
        assert_eq!(log.record(incident("", "m")).unwrap_err().code, ERR_INVALID_ARGUMENT);
        assert_eq!(log.record(incident(&"k".repeat(129), "m")).unwrap_err().code, ERR_INVALID_ARGUMENT);
        assert_eq!(log.record(incident("k", &"m".repeat(MAX_INCIDENT_RECORD_BYTES))).unwrap_err().code, ERR_TOO_LARGE);
        let deep: Value = serde_json::from_str(&("[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH))).unwrap();
        let err = log
            .record(Incident { kind: "k".into(), severity: IncidentSeverity::Info, message: "m".into(), details: deep })
            .unwrap_err();
        assert_eq!(err.code, ERR_INVALID_JSON);
        assert_eq!(seq_of(log.record(incident("k", "m")).unwrap()), 1, "refused records take no number");
        let bad = IncidentLogOptions { rate_limit: RateLimit { max: 0, window_ms: 1 }, ..Default::default() };
        assert_eq!(IncidentLog::open(&dir.join("x"), bad, Storage::new()).unwrap_err().code, ERR_INVALID_ARGUMENT);
    }

    #[test]
    fn group_commit_shares_fsyncs() {
        let (_root, dir) = new_dir();
        let storage = Storage::with_faults(FaultPlan::new().delay(IoOp::Sync, Duration::from_millis(5)));
        let options = IncidentLogOptions { rate_limit: RateLimit { max: 1000, window_ms: 1000 }, ..Default::default() };
        let (log, _) = IncidentLog::open(&dir, options, storage.clone()).unwrap();
        let log = Arc::new(log);
        // The first record creates the segment; the rest are appends.
        log.record(incident("k", "first")).unwrap();
        let syncs_before = storage.op_count(IoOp::Sync);
        let barrier = Arc::new(std::sync::Barrier::new(64));
        let threads: Vec<_> = (0..64)
            .map(|i| {
                let (log, barrier) = (log.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    seq_of(log.record(incident("k", &i.to_string())).unwrap())
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let syncs = storage.op_count(IoOp::Sync) - syncs_before;
        assert!(syncs < 64, "{syncs} fsyncs for 64 records");
        seqs.sort();
        assert_eq!(seqs, (2..=65).collect::<Vec<_>>());
        assert_eq!(all(&log).len(), 65);
    }

    /// A summary and its record queued in one call wake the writer even while it waits
    /// for more records than that (after a larger batch): nothing is left unwritten.
    #[test]
    fn two_lines_queued_at_once_are_written_while_the_writer_gathers() {
        let (_root, dir) = new_dir();
        let storage = Storage::with_faults(FaultPlan::new().delay(IoOp::Sync, Duration::from_millis(50)));
        let (clock, now) = ManualClock::new(10_000);
        let options =
            IncidentLogOptions { rate_limit: RateLimit { max: 1, window_ms: 1000 }, clock: now, ..Default::default() };
        let (log, _) = IncidentLog::open(&dir, options, storage.clone()).unwrap();
        log.record(incident("k", "kept")).unwrap();
        assert_eq!(log.record(incident("k", "suppressed")).unwrap(), RecordOutcome::RateLimited);
        // A batch of three: queued while the first record's fdatasync runs.
        let syncs_before = storage.op_count(IoOp::Sync);
        let first = log.queue_record(incident("a", "1")).unwrap();
        while storage.op_count(IoOp::Sync) == syncs_before {
            std::thread::sleep(Duration::from_millis(1));
        }
        let three: Vec<_> = ["b", "c", "d"].iter().map(|k| log.queue_record(incident(k, "x")).unwrap()).collect();
        first.wait().unwrap();
        three.into_iter().for_each(|p| {
            p.wait().unwrap();
        });
        // The window has passed: this call queues the summary and the record together.
        clock.advance(1000);
        let pending = log.queue_record(incident("k", "after")).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(pending.wait()));
        let outcome = receiver.recv_timeout(Duration::from_secs(20)).expect("written, not left waiting");
        assert!(matches!(outcome, Ok(RecordOutcome::Written { .. })), "{outcome:?}");
        let messages: Vec<String> = all(&log).into_iter().map(|r| r.message).collect();
        assert_eq!(messages[messages.len() - 2..], ["1 suppressed".to_string(), "after".to_string()]);
    }

    /// Records queued without a thread each while one fdatasync runs all go into the
    /// next commit, and each is acknowledged with its sequence number only after it.
    #[test]
    fn one_fdatasync_covers_everything_queued_during_the_previous_one() {
        let (_root, dir) = new_dir();
        let storage = Storage::with_faults(FaultPlan::new().delay(IoOp::Sync, Duration::from_millis(100)));
        let options = IncidentLogOptions { rate_limit: RateLimit { max: 1000, window_ms: 1000 }, ..Default::default() };
        let (log, _) = IncidentLog::open(&dir, options, storage.clone()).unwrap();
        log.record(incident("k", "creates the segment")).unwrap();
        let syncs_before = storage.op_count(IoOp::Sync);
        let first = log.queue_record(incident("k", "first")).unwrap();
        while storage.op_count(IoOp::Sync) == syncs_before {
            std::thread::sleep(Duration::from_millis(1));
        }
        let rest: Vec<Pending<RecordOutcome>> =
            (0..63).map(|i| log.queue_record(incident("k", &i.to_string())).unwrap()).collect();
        assert_eq!(seq_of(first.wait().unwrap()), 2);
        let seqs: Vec<u64> = rest.into_iter().map(|p| seq_of(p.wait().unwrap())).collect();
        assert_eq!(seqs, (3..=65).collect::<Vec<_>>(), "in the order queued");
        assert_eq!(
            storage.op_count(IoOp::Sync) - syncs_before,
            2,
            "one for the first, one for the 63 queued meanwhile"
        );
        // Rate limited: settled at once, nothing written.
        let limited = IncidentLogOptions { rate_limit: RateLimit { max: 1, window_ms: 60_000 }, ..Default::default() };
        let (_root, dir) = new_dir();
        let (log, _) = IncidentLog::open(&dir, limited, Storage::new()).unwrap();
        log.record(incident("k", "m")).unwrap();
        assert_eq!(log.queue_record(incident("k", "m")).unwrap().wait().unwrap(), RecordOutcome::RateLimited);
    }

    /// A failed append starts a new segment from memory, once; a second failure is
    /// ERR_PERSIST_FAILED, degraded, and costs no sequence number.
    #[test]
    fn failed_appends_start_a_new_segment_once() {
        let (_root, dir) = new_dir();
        let storage = Storage::new();
        let (log, _) = IncidentLog::open(&dir, Default::default(), storage.clone()).unwrap();
        log.record(incident("k", "one")).unwrap();

        storage.set_fault_plan(FaultPlan::new().fail(IoOp::Sync, 1));
        assert_eq!(seq_of(log.record(incident("k", "two")).unwrap()), 2);
        assert!(!storage.is_degraded());
        assert_eq!(segments(&dir), [segment_name(1), segment_name(2)], "new segment named by its first record");

        // Sync 1: the append; sync 2: the truncation of its tail; 3: the new segment.
        storage.set_fault_plan(FaultPlan::new().fail(IoOp::Sync, 1).fail(IoOp::Sync, 3));
        assert_eq!(log.record(incident("k", "lost")).unwrap_err().code, ERR_PERSIST_FAILED);
        assert!(log.is_degraded());
        storage.clear_fault_plan();
        assert_eq!(seq_of(log.record(incident("k", "three")).unwrap()), 3, "no gap");
        assert!(!log.is_degraded(), "the disk works again");
        assert!(!fs::read_dir(&dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(TEMP_PREFIX)));
        drop(log);

        let (log, problems) = open(&dir, Default::default());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(all(&log).iter().map(|r| r.message.as_str()).collect::<Vec<_>>(), ["one", "two", "three"]);
    }

    /// A directory replaced by a symlink after open: new segments and retention stay in the
    /// directory that was checked and locked, and reads come from it.
    #[test]
    fn segments_land_in_the_directory_checked_at_open() {
        let (_root, dir) = new_dir();
        let options = IncidentLogOptions { segment_bytes: 300, max_segments: 2, ..Default::default() };
        let (log, _) = open(&dir, options);
        log.record(incident("k", "before")).unwrap();
        let (moved, elsewhere) = swap_for_symlink(&dir);
        fs::write(elsewhere.join(segment_name(1)), b"theirs").unwrap();

        for i in 2..=12 {
            assert_eq!(seq_of(log.record(incident("k", &format!("after {i}"))).unwrap()), i);
        }
        assert_eq!(names_in(&elsewhere), [segment_name(1)], "nothing written or removed through the symlink");
        assert_eq!(fs::read(elsewhere.join(segment_name(1))).unwrap(), b"theirs");
        let kept = segments(&moved);
        assert_eq!(kept.len(), 2, "retention ran in the real directory: {kept:?}");
        assert!(!kept.contains(&segment_name(1)));
        assert_eq!(all(&log).last().unwrap().message, "after 12");
    }

    /// The issue's reproduction: a symlink named like the newest segment made the open
    /// fail with ERR_IO.
    #[test]
    fn a_symlink_named_like_the_newest_segment_does_not_fail_the_open() {
        let (root, dir) = new_dir();
        let (log, _) = open(&dir, Default::default());
        log.record(incident("k", "m")).unwrap();
        drop(log);
        fs::write(root.path().join("outside"), b"").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside"), dir.join(segment_name(2))).unwrap();
        let (log, problems) = open(&dir, Default::default());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!((problems[0].kind, problems[0].file.as_str()), (ProblemKind::ForeignFile, &*segment_name(2)));
        assert_eq!(seq_of(log.record(incident("k", "m")).unwrap()), 2);
    }

    /// A segment replaced by a symlink while the log is open is not followed, and the rest
    /// of the log still reads.
    #[test]
    fn a_segment_replaced_by_a_symlink_is_skipped_by_reads() {
        let (root, dir) = new_dir();
        let (log, _) = open(&dir, IncidentLogOptions { segment_bytes: 300, ..Default::default() });
        for i in 1..=5 {
            log.record(incident("k", &format!("m{i}"))).unwrap();
        }
        assert_eq!(segments(&dir), [segment_name(1), segment_name(4)]);
        let outside = root.path().join("outside");
        let line = r#"{"seq":1,"timestamp":1,"kind":"k","severity":"info","message":"outside","details":null}"#;
        fs::write(&outside, format!("{line}\n")).unwrap();
        fs::remove_file(dir.join(segment_name(1))).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join(segment_name(1))).unwrap();

        let result = log.read(&ReadFilter::default()).unwrap();
        assert_eq!(result.records.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(), ["m4", "m5"]);
        assert_eq!(result.problems.len(), 1, "{:?}", result.problems);
        assert_eq!((result.problems[0].kind, &result.problems[0].file), (ProblemKind::ForeignFile, &segment_name(1)));
    }

    /// A regular file under an in-bound segment name that holds no intact record (empty or
    /// garbage) was not written by this log: set aside, never counted on from, so it
    /// cannot use up the sequence numbers.
    #[test]
    fn segments_without_a_record_are_not_counted_on_from() {
        let (_root, dir) = new_dir();
        let (log, _) = open(&dir, Default::default());
        for _ in 0..3 {
            log.record(incident("k", "m")).unwrap();
        }
        drop(log);
        fs::write(dir.join(segment_name(MAX_SEQ)), b"").unwrap();
        fs::write(dir.join(segment_name(500)), b"garbage\n").unwrap();
        let (log, problems) = open(&dir, Default::default());
        let mut reported: Vec<(&str, ProblemKind, bool)> =
            problems.iter().map(|p| (p.file.as_str(), p.kind, p.set_aside_as.is_some())).collect();
        reported.sort_by_key(|r| r.0);
        let expected = [
            (&*segment_name(500), ProblemKind::ForeignFile, true),
            (&*segment_name(MAX_SEQ), ProblemKind::ForeignFile, true),
        ];
        assert_eq!(reported, expected);
        assert_eq!(seq_of(log.record(incident("k", "m")).unwrap()), 4);
        drop(log);

        // Alone in a new directory too.
        let (_root, dir) = new_dir();
        drop(open(&dir, Default::default()));
        fs::write(dir.join(segment_name(MAX_SEQ)), b"").unwrap();
        let (log, problems) = open(&dir, Default::default());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(seq_of(log.record(incident("k", "m")).unwrap()), 1);
    }

    /// What sits under a segment name without being a segment this log wrote (a symlink,
    /// FIFO, directory, a number past the bound or 0, a malformed name) no longer fails the
    /// open: it is set aside and reported, and the log carries on counting.
    #[test]
    fn foreign_files_under_segment_names_are_set_aside() {
        let (root, dir) = new_dir();
        let (log, _) = open(&dir, Default::default());
        for _ in 0..3 {
            log.record(incident("k", "m")).unwrap();
        }
        drop(log);
        let outside = root.path().join("outside");
        let line = r#"{"seq":100,"timestamp":1,"kind":"k","severity":"info","message":"outside","details":null}"#;
        fs::write(&outside, format!("{line}\n")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join(segment_name(100))).unwrap();
        mkfifo(&dir.join(segment_name(200)));
        fs::create_dir(dir.join(segment_name(300))).unwrap();
        let planted =
            ["incidents-18446744073709551615.jsonl", "incidents-00000000000000000000.jsonl", "incidents-7.jsonl"];
        for name in planted {
            fs::write(dir.join(name), format!("{line}\n")).unwrap();
        }

        let (log, problems) = open(&dir, Default::default());
        let mut reported: Vec<&str> = problems.iter().map(|p| p.file.as_str()).collect();
        reported.sort();
        let mut expected: Vec<String> = planted.iter().map(|n| n.to_string()).collect();
        expected.extend([segment_name(100), segment_name(200), segment_name(300)]);
        expected.sort();
        assert_eq!(reported, expected, "{problems:?}");
        assert!(problems.iter().all(|p| p.kind == ProblemKind::ForeignFile && p.set_aside_as.is_some()));
        assert_eq!(seq_of(log.record(incident("k", "m")).unwrap()), 4);
        assert_eq!(all(&log).len(), 4);
        assert_eq!(fs::read_to_string(&outside).unwrap(), format!("{line}\n"), "target untouched");
    }

    #[test]
    fn is_an_incident_sink() {
        let (_root, dir) = new_dir();
        let (log, _) = open(
            &dir,
            IncidentLogOptions { rate_limit: RateLimit { max: 1, window_ms: 60_000 }, ..Default::default() },
        );
        let sink: &dyn IncidentSink = &log;
        assert_eq!(sink.record(incident("k", "m")), Ok(1));
        assert_eq!(sink.record(incident("k", "m")), Ok(0), "rate limited");
        assert!(sink.record(incident("", "m")).unwrap_err().starts_with("ERR_INVALID_ARGUMENT"));
    }
}
