//! # The on-disk format of durable state, in one place
//!
//! Everything is in state directories (mode 0700, owned by the process's user, locked
//! with `flock` on a file `LOCK` inside while open). Names a writer here produces carry
//! sequence numbers as exactly 20 decimal digits, in 1..=2^53−1; anything else under a
//! family's prefix is not ours and is set aside on open. Integers are little-endian.
//!
//! ## Common to every family
//! - `.tmp-{final name}-{pid}-{n}`: a whole-file write in progress (temp file, fsync,
//!   rename, directory fsync). Leftovers of a crash are removed on open.
//! - `corrupt-{original name}-{n}`: a damaged or foreign file set aside, `n` counting up
//!   over the directory; the newest 3 per family are kept.
//!
//! ## Checkpoints: `checkpoint-{seq:020}.ckpt`
//! One generation a file, written whole. The newest generation that validates wins.
//!
//! | offset | size | field                                      |
//! |--------|------|--------------------------------------------|
//! | 0      | 8    | magic `HPCCKPT\x01`                        |
//! | 8      | 2    | format version (1)                         |
//! | 10     | 2    | flags (0; any other value is refused)      |
//! | 12     | 8    | sequence number (must match the file name) |
//! | 20     | 8    | timestamp, ms since the Unix epoch         |
//! | 28     | 8    | payload length                             |
//! | 36     | 4    | CRC-32C of the payload                     |
//! | 40     | 4    | CRC-32C of bytes 0..40                     |
//! | 44     | n    | payload: JSON                              |
//!
//! ## Operation journal: `journal-{n:020}.log` (in the checkpoint directory)
//! A sequence of frames, each
//! `u32 length | u32 CRC-32C of the 4 length bytes then the payload | payload`, the
//! payload one JSON record: `{"op":"begin","id":…,"ts":ms,"details":…}` or
//! `{"op":"end","id":…,"ts":ms,"result":…}`. Every file is self-contained: a new one
//! starts with the `begin` records of all active operations, and older files are removed
//! once it is durable, so replay reads the newest file alone.
//! - Replay: an incomplete or damaged frame with no intact frame after it is a torn tail
//!   (an interrupted append), cut off. Damage with intact frames after it stops replay
//!   there; the file is set aside and a new one started with what came before. An intact
//!   record that contradicts the ones before (`end` of an operation not active, a second
//!   `begin`) is reported and ignored.
//!
//! ## Incident log: `incidents-{first seq:020}.jsonl` (a directory of its own)
//! JSON Lines, one record a line:
//! `{"seq":N,"timestamp":ms,"kind":"…","severity":"info|warn|error|critical","message":"…","details":…}`.
//! A segment is named by the sequence number of its first record and closed once it
//! reaches the segment size; the oldest segments are removed beyond the count or byte
//! limits. Sequence numbers continue across segments and restarts, without gaps.
//! - Reading back: an incomplete or unparsable tail of the newest segment is cut off on
//!   open; a bad line with good lines after it is skipped and reported; a segment holding
//!   no intact record was not written here and is set aside.
//!
//! ## Metrics history: `history-fine-{n:020}.rec`, `history-coarse-{n:020}.rec` (a directory of its own)
//! Fixed-size records of 88 bytes, back to back, no file header; `n` is the start (ms since
//! the Unix epoch) of the bucket that opened the file, or one past the newest file's number
//! when the clock went back (so a file may hold buckets older than its name; readers read
//! every file, newest `retention / file span + 2` of each tier). A record is one source (the host, or one
//! GPU) over one bucket `[start, start + step)`, each signal as min/max/last over the
//! samples folded in. The fine tier has one bucket a step (10 s by default, kept 24 h,
//! files of 360 steps), the coarse tier one every 30 steps (5 min, kept 7 days, files of
//! 288 steps). A bucket is appended (one write, one fdatasync) once the first sample of
//! a later bucket arrives, or on close; so at most one record per source and step.
//!
//! | offset | size | field                                                         |
//! |--------|------|---------------------------------------------------------------|
//! | 0      | 1    | kind: 1 host, 2 GPU                                           |
//! | 1      | 1    | GPU index (0 for the host)                                    |
//! | 2      | 2    | samples folded in (≥ 1, saturating)                           |
//! | 4      | 4    | step, ms (> 0)                                                |
//! | 8      | 8    | bucket start, ms since the Unix epoch: a whole number of steps, at most 9999-12-31 |
//! | 16     | 60   | 5 signals × (u32 min, u32 max, u32 last), min ≤ max           |
//! | 76     | 1    | known: bit i set when signal i had a value (else its 12 are 0) |
//! | 77     | 1    | host: supervisor state at the last sample (0 starting, 1 healthy, 2 unhealthy, 3 unknown) |
//! | 78     | 1    | host: states seen in the bucket (bit `1 << state`)            |
//! | 79     | 1    | flags at the last sample                                      |
//! | 80     | 1    | flags seen in the bucket (OR)                                 |
//! | 81     | 3    | reserved, 0                                                   |
//! | 84     | 4    | CRC-32C of bytes 0..84                                        |
//!
//! Host signals: memory used and total (MiB, host or cgroup, whichever binds), PSI memory
//! `some` and `full` avg10 (hundredths of a percent), the check's issue count. Host flags:
//! 1 intake closed, 2 recovery pause, 4 supervisor pause, 8 the check was unhealthy.
//! GPU signals: memory used and total (MiB), temperature (°C), utilisation (%), power
//! (mW). GPU flag: 1 lost.
//! - Disk bound: each tier keeps at most `retention / file span + 2` files (older ones are
//!   removed when a file is started, oldest first), each of at most `(file steps + 32) ×
//!   (1 + GPUs) × 88` bytes (a full file is closed early): 10.4 MB (9.9 MiB) for 8 GPUs at
//!   the default step, whatever the clock does (`HistoryPolicy::disk_bound_bytes`).
//! - Reading back: a record failing its CRC or checks is skipped; trailing bytes short of a
//!   record are an append in flight. Readers open the directory without its lock. A file
//!   that cannot be read is named in the readout, not taken for one the writer removed.
//!   The `known` bits say which signals hold values; a signal not known is not read.
//! - On open for writing: trailing records of the newest file of each tier that fail the
//!   check, and a partial record, are a torn tail (an interrupted append), cut off. Damage
//!   with intact records after it stays (and is skipped). The bucket open at a crash is
//!   lost (at most one fine step; the open coarse bucket's minutes stay in the fine tier).
//!   A bucket written twice (a restart within it) is folded into one by readers; buckets
//!   of runs with other steps that start at the same time stay apart.
//! - A failed check is recorded as a host record with the state and flags and no signals.
//!
//! ## Appends (journal and incident log)
//! Records queued while one commit runs are written by the next with one `write` and one
//! `fdatasync`; each is acknowledged only after that returns. After a failed write or
//! fdatasync nothing more is appended to that file: its content goes into a new file,
//! written whole, once; a second failure is `ERR_PERSIST_FAILED`.
