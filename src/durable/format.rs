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
//! ## Appends (journal and incident log)
//! Records queued while one commit runs are written by the next with one `write` and one
//! `fdatasync`; each is acknowledged only after that returns. After a failed write or
//! fdatasync nothing more is appended to that file: its content goes into a new file,
//! written whole, once; a second failure is `ERR_PERSIST_FAILED`.
