//! Policy numbers for durable state, in one place. Options structs take their defaults
//! from here; limits that are not options are used directly.

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Checkpoint generations kept (newest valid ones). Fewer than two would leave no
/// fallback when the newest turns out damaged.
pub const DEFAULT_CHECKPOINT_RETAIN: usize = 3;
pub const MIN_CHECKPOINT_RETAIN: usize = 2;
/// Largest checkpoint file (header + payload) written or read back.
pub const DEFAULT_CHECKPOINT_MAX_BYTES: u64 = 64 * MIB;

/// The largest sequence number any durable file name or record carries (checkpoint
/// generations, journal files, incident records, aside counters): JavaScript numbers hold
/// integers exactly only up to 2^53 − 1, and staying far below `u64::MAX` means counting
/// on from any accepted number cannot overflow. Writers refuse to go past it; a name past
/// it was not written here and is set aside, never counted on from.
pub const MAX_SEQUENCE: u64 = (1 << 53) - 1;

/// Damaged files renamed aside (`corrupt-…`) are kept for inspection, newest this many
/// per kind of file (checkpoint / journal).
pub const CORRUPT_FILES_KEPT: usize = 3;

/// Deepest JSON nesting accepted, written or read back. Kept well under serde_json's own
/// recursion limit (a `Value` of 128 nested arrays already fails there), so that anything
/// this module accepts can also be parsed into a `Value` by the binding, even wrapped in
/// one more level (journal and incident records wrap caller JSON in an object).
pub const MAX_JSON_DEPTH: usize = 100;

/// Operation ids in the journal: non-empty, at most this many bytes.
pub const MAX_OPERATION_ID_BYTES: usize = 256;
/// Largest journal record (the JSON of one frame).
pub const MAX_JOURNAL_RECORD_BYTES: usize = MIB as usize;
/// Once the current journal file grows past this, it is compacted (rewritten as the
/// `begin` records of the active operations) without waiting for a checkpoint.
pub const JOURNAL_COMPACT_AT_BYTES: u64 = 8 * MIB;
/// Largest journal file read back on open.
pub const MAX_JOURNAL_FILE_BYTES: u64 = 64 * MIB;

/// Incident log: a segment is closed once it holds this many bytes.
pub const INCIDENT_SEGMENT_BYTES: u64 = MIB;
/// Incident log retention: at most this many segments …
pub const INCIDENT_MAX_SEGMENTS: usize = 16;
/// … and at most this many bytes in all (the oldest segments go first).
pub const INCIDENT_MAX_BYTES: u64 = 64 * MIB;
/// Rate limit per incident kind: at most this many records …
pub const INCIDENT_RATE_LIMIT_MAX: u32 = 20;
/// … per window of this many milliseconds.
pub const INCIDENT_RATE_LIMIT_WINDOW_MS: u64 = 60_000;
/// Largest incident record (one JSON line).
pub const MAX_INCIDENT_RECORD_BYTES: usize = 256 * KIB as usize;
/// Incident kinds: non-empty, at most this many bytes.
pub const MAX_INCIDENT_KIND_BYTES: usize = 128;
/// Rate-limit windows tracked before idle ones are forgotten (kinds are caller-chosen).
pub const MAX_RATE_LIMITED_KINDS: usize = 1024;
