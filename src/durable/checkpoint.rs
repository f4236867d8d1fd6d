//! Checkpoint files: one JSON payload per generation, behind a checksummed header, named
//! by sequence number only (`checkpoint-{seq:020}.ckpt`), written through the durable
//! whole-file protocol. The newest *valid* generation (by sequence, never mtime) wins;
//! damaged ones are set aside and reported, and an older generation takes over.
//!
//! The file format is in [`super::format`].

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::defaults::{MAX_JSON_DEPTH, MAX_SEQUENCE, MIN_CHECKPOINT_RETAIN};
use super::dir::DirEntry;
use super::fs::{
    classify, open_state_dir, parse_aside_name, parse_padded_seq, remove_files, remove_temp_files, set_aside,
    set_aside_foreign, validate_json, write_file_durable, DurableError, ForeignFile, Result, StateDir, Storage,
    ERR_CHECKPOINT_LOCKED, ERR_CORRUPT, ERR_INVALID_ARGUMENT, ERR_INVALID_ID, ERR_INVALID_JSON, ERR_INVALID_RETAIN,
    ERR_NOT_FOUND, ERR_TOO_LARGE, SEQ_DIGITS,
};
use crate::sampling::unix_time_ms;
use crate::sync::lock;

pub const CHECKPOINT_MAGIC: [u8; 8] = *b"HPCCKPT\x01";
pub const CHECKPOINT_FORMAT_VERSION: u16 = 1;
pub const CHECKPOINT_HEADER_BYTES: usize = 44;
/// Checkpoint ids are `checkpoint-` and 20 digits; file names add `.ckpt`.
const ID_PREFIX: &str = "checkpoint-";
const FILE_SUFFIX: &str = ".ckpt";

/// One checkpoint generation as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// `checkpoint-{seq:020}`.
    pub id: String,
    pub seq: u64,
    /// When it was written (0 where the file is not valid).
    pub timestamp_ms: u64,
    /// Size of the file on disk, header included.
    pub bytes: u64,
    pub valid: bool,
}

/// A valid checkpoint read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    /// The JSON payload, checked to parse and to nest at most `MAX_JSON_DEPTH` deep.
    pub payload: Vec<u8>,
}

/// A checkpoint file passed over because it is damaged or unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    pub id: String,
    pub reason: String,
    /// Where a damaged file was renamed to (`corrupt-…`); `None` if it was left in place
    /// (too large or unreadable rather than damaged).
    pub set_aside_as: Option<String>,
}

/// The result of [`CheckpointStore::latest_valid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestValid {
    pub checkpoint: Option<Checkpoint>,
    /// Newer files passed over on the way to it.
    pub skipped: Vec<SkippedFile>,
}

/// The checkpoint generations in one locked directory.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: Arc<StateDir>,
    retain: usize,
    max_bytes: u64,
    storage: Storage,
    /// One operation at a time: writes, pruning and setting aside must not interleave.
    state: Mutex<StoreState>,
}

#[derive(Debug)]
struct StoreState {
    /// Highest sequence number this store wrote, as vouched for by an intact header in a
    /// file under that name (valid or not, set aside or not): never reused, so a name
    /// always means one content. Names alone are not trusted: a planted one could
    /// otherwise exhaust the numbers.
    highest_seq: u64,
    /// Generations known to be valid (checked on open or written by us).
    known_valid: BTreeSet<u64>,
}

/// What reading one checkpoint file gave.
enum FileCheck {
    Valid(Checkpoint),
    /// Damaged: set aside.
    Corrupt(String),
    /// Too large or unreadable: left in place.
    Unusable(DurableError),
    /// Gone since the directory was listed.
    Vanished,
}

impl CheckpointStore {
    /// Opens (creating) `dir`, locks it, removes leftover temp files and checks every
    /// checkpoint, setting damaged ones aside; sets aside (and reports) anything under a
    /// checkpoint name that this store does not write: a symlink, directory, FIFO or
    /// device, a malformed name, a sequence number past [`MAX_SEQUENCE`]. `retain` (>= 2)
    /// newest valid generations are kept after each write; `max_bytes` bounds a file.
    pub fn open(dir: &Path, retain: usize, max_bytes: u64, storage: Storage) -> Result<(Self, Vec<SkippedFile>)> {
        check_options(retain, max_bytes)?;
        let state_dir = Arc::new(open_state_dir(dir, ERR_CHECKPOINT_LOCKED)?);
        Self::open_in(state_dir, retain, max_bytes, storage)
    }

    /// As [`open`](Self::open), in a state directory already opened (and locked), e.g.
    /// shared with the operation journal.
    pub fn open_in(
        dir: Arc<StateDir>,
        retain: usize,
        max_bytes: u64,
        storage: Storage,
    ) -> Result<(Self, Vec<SkippedFile>)> {
        check_options(retain, max_bytes)?;
        remove_temp_files(&storage, &dir, ID_PREFIX)?;
        let foreign = set_aside_foreign(&storage, &dir, ID_PREFIX, FILE_SUFFIX)?;
        let store = CheckpointStore {
            dir,
            retain,
            max_bytes,
            storage,
            state: Mutex::new(StoreState { highest_seq: 0, known_valid: BTreeSet::new() }),
        };
        let mut skipped: Vec<SkippedFile> = foreign.into_iter().map(SkippedFile::foreign).collect();
        {
            let mut state = lock(&store.state);
            state.highest_seq = store.highest_vouched_seq()?;
            for seq in store.generations()? {
                match store.check_file(seq) {
                    FileCheck::Valid(_) => {
                        state.known_valid.insert(seq);
                    }
                    other => skipped.extend(store.skip(&mut state, seq, other)),
                }
            }
        }
        Ok((store, skipped))
    }

    /// Whether persistence is degraded (a write failed even after its rewrite).
    pub fn is_degraded(&self) -> bool {
        self.storage.is_degraded()
    }

    /// Writes `payload` (JSON) as the next generation, durably, then removes generations
    /// older than the `retain` newest valid ones. The payload is checked first: at most
    /// `max_bytes` with the header (`ERR_TOO_LARGE`), valid JSON at most `MAX_JSON_DEPTH`
    /// deep (`ERR_INVALID_JSON`), so that nothing is written that could not be read back.
    pub fn write(&self, payload: &[u8]) -> Result<CheckpointMeta> {
        validate_json(payload, MAX_JSON_DEPTH)
            .map_err(|e| DurableError::new(ERR_INVALID_JSON, format!("checkpoint payload refused: {e}")))?;
        self.write_unparsed(payload)
    }

    /// Writes `value` as the next generation (see [`write`](Self::write)). It is valid
    /// JSON by construction, so only its depth is checked, not parsed again.
    pub fn write_value(&self, value: &serde_json::Value) -> Result<CheckpointMeta> {
        let payload = serde_json::to_vec(value).map_err(|e| DurableError::new(ERR_INVALID_JSON, e.to_string()))?;
        if crate::durable::fs::json_nesting_exceeds(&payload, MAX_JSON_DEPTH) {
            return Err(DurableError::new(
                ERR_INVALID_JSON,
                format!("checkpoint payload refused: JSON nests deeper than {MAX_JSON_DEPTH} levels"),
            ));
        }
        self.write_unparsed(&payload)
    }

    fn write_unparsed(&self, payload: &[u8]) -> Result<CheckpointMeta> {
        let bytes = (CHECKPOINT_HEADER_BYTES + payload.len()) as u64;
        if bytes > self.max_bytes {
            return Err(DurableError::new(
                ERR_TOO_LARGE,
                format!("checkpoint of {bytes} bytes (with header) is over the limit of {}", self.max_bytes),
            ));
        }
        let mut state = lock(&self.state);
        let seq = state.highest_seq + 1;
        if seq > MAX_SEQUENCE {
            return Err(DurableError::new(
                ERR_INVALID_ARGUMENT,
                format!("checkpoint sequence numbers are exhausted at {MAX_SEQUENCE}"),
            ));
        }
        // Taken even if the write fails: a name is never reused for other content.
        state.highest_seq = seq;
        let timestamp_ms = unix_time_ms() as u64;
        write_file_durable(&self.storage, &self.dir, &file_name(seq), &encode_checkpoint(seq, timestamp_ms, payload))?;
        state.known_valid.insert(seq);
        self.prune(&mut state)?;
        Ok(CheckpointMeta { id: checkpoint_id(seq), seq, timestamp_ms, bytes, valid: true })
    }

    /// The newest valid checkpoint by sequence number, reading files newest first; damaged
    /// ones met on the way are set aside and listed in `skipped`.
    pub fn latest_valid(&self) -> Result<LatestValid> {
        let mut state = lock(&self.state);
        let mut skipped = Vec::new();
        for seq in self.generations()?.into_iter().rev() {
            match self.check_file(seq) {
                FileCheck::Valid(checkpoint) => {
                    state.known_valid.insert(seq);
                    return Ok(LatestValid { checkpoint: Some(checkpoint), skipped });
                }
                other => skipped.extend(self.skip(&mut state, seq, other)),
            }
        }
        Ok(LatestValid { checkpoint: None, skipped })
    }

    /// Every checkpoint file, oldest first, each checked (`valid`). Read-only: damaged
    /// files are listed, not set aside.
    pub fn list(&self) -> Result<Vec<CheckpointMeta>> {
        let _state = lock(&self.state);
        let mut metas = Vec::new();
        for seq in self.generations()? {
            let meta = match self.check_file(seq) {
                FileCheck::Valid(checkpoint) => checkpoint.meta,
                FileCheck::Vanished => continue,
                FileCheck::Corrupt(_) | FileCheck::Unusable(_) => CheckpointMeta {
                    id: checkpoint_id(seq),
                    seq,
                    timestamp_ms: 0,
                    bytes: self.dir.file_len(&file_name(seq)).unwrap_or(0),
                    valid: false,
                },
            };
            metas.push(meta);
        }
        Ok(metas)
    }

    /// Loads checkpoint `id` (exactly `checkpoint-` and 20 digits, else `ERR_INVALID_ID`:
    /// an id can only name a file in this directory). `ERR_NOT_FOUND`, `ERR_TOO_LARGE`, or
    /// `ERR_CORRUPT` (the file is then set aside).
    pub fn load(&self, id: &str) -> Result<Checkpoint> {
        let seq = parse_checkpoint_id(id).ok_or_else(|| {
            DurableError::new(ERR_INVALID_ID, format!("not a checkpoint id: {id:?} (expected checkpoint-<20 digits>)"))
        })?;
        let mut state = lock(&self.state);
        match self.check_file(seq) {
            FileCheck::Valid(checkpoint) => Ok(checkpoint),
            FileCheck::Vanished => Err(DurableError::new(ERR_NOT_FOUND, format!("no checkpoint {id}"))),
            FileCheck::Unusable(e) => Err(e),
            corrupt @ FileCheck::Corrupt(_) => {
                let skipped = self.skip(&mut state, seq, corrupt).expect("corrupt files are always reported");
                let aside = skipped.set_aside_as.map(|a| format!("; set aside as {a}")).unwrap_or_default();
                Err(DurableError::new(ERR_CORRUPT, format!("checkpoint {id} is damaged: {}{aside}", skipped.reason)))
            }
        }
    }

    /// Sequence numbers of the checkpoint files in the directory, ascending: regular files
    /// under names this store writes, nothing else.
    fn generations(&self) -> Result<Vec<u64>> {
        let mut seqs: Vec<u64> = self.dir.list()?.iter().filter_map(generation).collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// The highest sequence number of a checkpoint file, live or set aside, whose header
    /// is intact and names that number; 0 if none.
    fn highest_vouched_seq(&self) -> Result<u64> {
        let mut highest = 0;
        for entry in self.dir.list()? {
            let Some(seq) = generation(&entry).or_else(|| set_aside_generation(&entry)) else { continue };
            if seq > highest
                && self
                    .storage
                    .read_head(&self.dir, &entry.name, CHECKPOINT_HEADER_BYTES as u64)
                    .is_ok_and(|head| intact_header_seq(&head) == Some(seq))
            {
                highest = seq;
            }
        }
        Ok(highest)
    }

    fn check_file(&self, seq: u64) -> FileCheck {
        let bytes = match self.storage.read_bounded(&self.dir, &file_name(seq), self.max_bytes) {
            Ok(bytes) => bytes,
            Err(e) if e.code == ERR_NOT_FOUND => return FileCheck::Vanished,
            Err(e) => return FileCheck::Unusable(e),
        };
        match decode_checkpoint(&bytes, seq) {
            Ok((timestamp_ms, payload)) => FileCheck::Valid(Checkpoint {
                meta: CheckpointMeta {
                    id: checkpoint_id(seq),
                    seq,
                    timestamp_ms,
                    bytes: bytes.len() as u64,
                    valid: true,
                },
                payload: payload.to_vec(),
            }),
            Err(reason) => FileCheck::Corrupt(reason),
        }
    }

    /// Reports a file that is not valid; sets damaged ones aside.
    fn skip(&self, state: &mut StoreState, seq: u64, check: FileCheck) -> Option<SkippedFile> {
        state.known_valid.remove(&seq);
        let id = checkpoint_id(seq);
        match check {
            FileCheck::Valid(_) | FileCheck::Vanished => None,
            FileCheck::Unusable(e) => Some(SkippedFile { id, reason: e.message, set_aside_as: None }),
            FileCheck::Corrupt(reason) => match set_aside(&self.storage, &self.dir, &file_name(seq), ID_PREFIX) {
                Ok(aside) => Some(SkippedFile { id, reason, set_aside_as: Some(aside) }),
                Err(e) => Some(SkippedFile {
                    id,
                    reason: format!("{reason} (could not set it aside: {e})"),
                    set_aside_as: None,
                }),
            },
        }
    }

    /// Removes every checkpoint file older than the `retain`-th newest valid generation.
    /// Runs only after a new generation is durable.
    fn prune(&self, state: &mut StoreState) -> Result<()> {
        let Some(&oldest_kept) = state.known_valid.iter().rev().nth(self.retain - 1) else {
            return Ok(());
        };
        let doomed: Vec<u64> = self.generations()?.into_iter().filter(|&s| s < oldest_kept).collect();
        for seq in &doomed {
            state.known_valid.remove(seq);
        }
        remove_files(&self.storage, &self.dir, &doomed.iter().map(|&s| file_name(s)).collect::<Vec<_>>());
        Ok(())
    }
}

fn check_options(retain: usize, max_bytes: u64) -> Result<()> {
    if retain < MIN_CHECKPOINT_RETAIN {
        return Err(DurableError::new(
            ERR_INVALID_RETAIN,
            format!("retain must be at least {MIN_CHECKPOINT_RETAIN} (got {retain}): one older generation must survive a damaged newest"),
        ));
    }
    if max_bytes <= CHECKPOINT_HEADER_BYTES as u64 {
        return Err(DurableError::new(
            ERR_INVALID_ARGUMENT,
            format!("max_bytes must be more than the {CHECKPOINT_HEADER_BYTES}-byte header (got {max_bytes})"),
        ));
    }
    Ok(())
}

pub fn checkpoint_id(seq: u64) -> String {
    format!("{ID_PREFIX}{seq:0width$}", width = SEQ_DIGITS)
}

fn file_name(seq: u64) -> String {
    format!("{}{FILE_SUFFIX}", checkpoint_id(seq))
}

/// `checkpoint-` followed by exactly 20 ASCII digits, 1..=[`MAX_SEQUENCE`] → the
/// sequence number.
pub fn parse_checkpoint_id(id: &str) -> Option<u64> {
    id.strip_prefix(ID_PREFIX).and_then(parse_padded_seq)?.ok()
}

/// The sequence number of a checkpoint file this store could have written.
fn generation(entry: &DirEntry) -> Option<u64> {
    classify(entry, ID_PREFIX, FILE_SUFFIX).ours()
}

/// The sequence number of a checkpoint file set aside (`corrupt-{name}-{n}`) under a name
/// this store could have written.
fn set_aside_generation(entry: &DirEntry) -> Option<u64> {
    let (original, _) = parse_aside_name(&entry.name)?;
    generation(&DirEntry { name: original.to_string(), is_file: entry.is_file })
}

impl SkippedFile {
    fn foreign(file: ForeignFile) -> Self {
        let id = file.name.strip_suffix(FILE_SUFFIX).unwrap_or(&file.name).to_string();
        SkippedFile { id, reason: file.reason, set_aside_as: file.set_aside_as }
    }
}

/// Magic and header CRC of a `CHECKPOINT_HEADER_BYTES`-byte header.
fn check_header_integrity(header: &[u8]) -> std::result::Result<(), String> {
    if header[..8] != CHECKPOINT_MAGIC {
        return Err("bad magic: not a checkpoint file".into());
    }
    if crc32c::crc32c(&header[..40]) != u32::from_le_bytes(header[40..44].try_into().expect("4 bytes")) {
        return Err("header CRC mismatch".into());
    }
    Ok(())
}

/// The sequence number in a header that is intact (magic and header CRC), if it is one.
fn intact_header_seq(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..CHECKPOINT_HEADER_BYTES)?;
    check_header_integrity(header).ok()?;
    Some(u64::from_le_bytes(header[12..20].try_into().expect("8 bytes")))
}

/// The bytes of a checkpoint file.
pub fn encode_checkpoint(seq: u64, timestamp_ms: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CHECKPOINT_HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&CHECKPOINT_MAGIC);
    bytes.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&timestamp_ms.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let header_crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&header_crc.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Checks a checkpoint file's bytes (named for `expected_seq`) and returns its timestamp
/// and payload, or why it is not valid.
pub fn decode_checkpoint(bytes: &[u8], expected_seq: u64) -> std::result::Result<(u64, &[u8]), String> {
    let Some((header, payload)) = bytes.split_at_checked(CHECKPOINT_HEADER_BYTES) else {
        return Err(format!(
            "truncated: {} bytes, shorter than the {CHECKPOINT_HEADER_BYTES}-byte header",
            bytes.len()
        ));
    };
    let u16_at = |at: usize| u16::from_le_bytes(header[at..at + 2].try_into().expect("2 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    check_header_integrity(header)?;
    let version = u16_at(8);
    if version != CHECKPOINT_FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    let flags = u16_at(10);
    if flags != 0 {
        return Err(format!("unknown flags {flags:#06x}"));
    }
    let seq = u64_at(12);
    if seq != expected_seq {
        return Err(format!("header says sequence {seq}, the file name {expected_seq}"));
    }
    let payload_len = u64_at(28);
    if payload_len != payload.len() as u64 {
        return Err(format!("length mismatch: header says {payload_len} payload bytes, file has {}", payload.len()));
    }
    if crc32c::crc32c(payload) != u32_at(36) {
        return Err("payload CRC mismatch".into());
    }
    validate_json(payload, MAX_JSON_DEPTH)?;
    Ok((u64_at(20), payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::fs::test_support::{mkfifo, names_in, swap_for_symlink, FAULT_STEPS};
    use crate::durable::fs::{FaultPlan, ERR_PERSIST_FAILED, ERR_UNSAFE_DIRECTORY, TEMP_PREFIX};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const MAX: u64 = 1 << 20;

    fn open(dir: &Path) -> (CheckpointStore, Vec<SkippedFile>) {
        CheckpointStore::open(dir, 3, MAX, Storage::new()).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    /// A fresh state directory path (tempdir itself is 0755, which is refused).
    fn new_dir() -> (tempfile::TempDir, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        (root, dir)
    }

    fn latest_seq(store: &CheckpointStore) -> Option<u64> {
        store.latest_valid().unwrap().checkpoint.map(|c| c.meta.seq)
    }

    #[test]
    fn round_trip() {
        let (_root, dir) = new_dir();
        let (store, skipped) = open(&dir);
        assert!(skipped.is_empty());
        assert_eq!(store.latest_valid().unwrap(), LatestValid { checkpoint: None, skipped: vec![] });

        let meta = store.write(br#"{"gen":1}"#).unwrap();
        assert_eq!(meta.id, "checkpoint-00000000000000000001");
        assert_eq!((meta.seq, meta.bytes, meta.valid), (1, 44 + 9, true));
        store.write(br#"{"gen":2}"#).unwrap();

        let latest = store.latest_valid().unwrap().checkpoint.unwrap();
        assert_eq!(latest.payload, br#"{"gen":2}"#);
        assert_eq!(latest.meta.seq, 2);
        assert_eq!(store.load("checkpoint-00000000000000000001").unwrap().payload, br#"{"gen":1}"#);
        assert_eq!(
            store.list().unwrap().iter().map(|m| (m.seq, m.valid)).collect::<Vec<_>>(),
            vec![(1, true), (2, true)]
        );
        assert!(names(&dir).contains(&"checkpoint-00000000000000000002.ckpt".to_string()));
        assert_eq!(
            fs::metadata(dir.join("checkpoint-00000000000000000002.ckpt")).unwrap().permissions().mode() & 0o777,
            0o600
        );

        drop(store);
        let (store, _) = open(&dir);
        assert_eq!(store.write(b"[]").unwrap().seq, 3, "sequence continues after reopen");
    }

    #[test]
    fn retains_newest_valid_generations() {
        let (_root, dir) = new_dir();
        let (store, _) = CheckpointStore::open(&dir, 2, MAX, Storage::new()).unwrap();
        for i in 0..5 {
            store.write(format!("{i}").as_bytes()).unwrap();
        }
        assert_eq!(store.list().unwrap().iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(CheckpointStore::open(&dir, 1, MAX, Storage::new()).unwrap_err().code, ERR_INVALID_RETAIN);
    }

    /// The heart of it: no single flipped bit and no truncation of the newest file is ever
    /// returned as valid; the older generation is returned instead.
    #[test]
    fn every_bit_flip_and_truncation_is_detected() {
        let (_root, dir) = new_dir();
        let (store, _) = open(&dir);
        store.write(br#"{"gen":1}"#).unwrap();
        store.write(br#"{"gen":2}"#).unwrap();
        let path = dir.join("checkpoint-00000000000000000002.ckpt");
        let original = fs::read(&path).unwrap();

        let mut damaged_versions: Vec<Vec<u8>> = Vec::new();
        for bit in 0..original.len() * 8 {
            let mut bytes = original.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            damaged_versions.push(bytes);
        }
        for len in 0..original.len() {
            damaged_versions.push(original[..len].to_vec());
        }
        for (i, bytes) in damaged_versions.iter().enumerate() {
            fs::write(&path, bytes).unwrap();
            let latest = store.latest_valid().unwrap();
            let checkpoint = latest.checkpoint.unwrap_or_else(|| panic!("case {i}: nothing valid"));
            assert_eq!(checkpoint.payload, br#"{"gen":1}"#, "case {i}: damaged file returned as valid");
            assert_eq!(latest.skipped.len(), 1, "case {i}");
            assert_eq!(latest.skipped[0].id, "checkpoint-00000000000000000002");
            assert!(!path.exists(), "case {i}: damaged file set aside");
        }
        // Only the newest three aside files are kept.
        assert_eq!(names(&dir).iter().filter(|n| n.starts_with("corrupt-")).count(), 3);
    }

    #[test]
    fn open_sets_damaged_files_aside_and_keeps_counting() {
        let (_root, dir) = new_dir();
        let (store, _) = open(&dir);
        store.write(b"1").unwrap();
        store.write(b"2").unwrap();
        drop(store);
        let path = dir.join("checkpoint-00000000000000000002.ckpt");
        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 0x10;
        fs::write(&path, bytes).unwrap();
        fs::write(dir.join(".tmp-checkpoint-00000000000000000003.ckpt-1-1"), b"partial").unwrap();

        let (store, skipped) = open(&dir);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].reason, "payload CRC mismatch");
        assert_eq!(skipped[0].set_aside_as.as_deref(), Some("corrupt-checkpoint-00000000000000000002.ckpt-1"));
        assert!(!names(&dir).iter().any(|n| n.starts_with(TEMP_PREFIX)), "leftover temp removed");
        assert_eq!(latest_seq(&store), Some(1));
        // Sequence 2 is taken (by the file set aside): the next one is 3, also after reopen.
        drop(store);
        let (store, _) = open(&dir);
        assert_eq!(store.write(b"3").unwrap().seq, 3);
    }

    #[test]
    fn json_is_checked_written_and_read() {
        let (_root, dir) = new_dir();
        let (store, _) = open(&dir);
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(store.write(deep(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert_eq!(store.write(deep(MAX_JSON_DEPTH + 1).as_bytes()).unwrap_err().code, ERR_INVALID_JSON);
        assert_eq!(store.write(b"{not json").unwrap_err().code, ERR_INVALID_JSON);

        // Intact files whose JSON is too deep or invalid are damaged all the same.
        fs::write(dir.join(file_name(10)), encode_checkpoint(10, 1, deep(MAX_JSON_DEPTH + 1).as_bytes())).unwrap();
        fs::write(dir.join(file_name(11)), encode_checkpoint(11, 1, b"{oops")).unwrap();
        let latest = store.latest_valid().unwrap();
        assert_eq!(latest.checkpoint.unwrap().meta.seq, 1);
        assert!(latest.skipped[0].reason.contains("not valid JSON"), "{:?}", latest.skipped);
        assert!(latest.skipped[1].reason.contains("deeper"), "{:?}", latest.skipped);
    }

    #[test]
    fn size_limit_applies_before_reading() {
        let (_root, dir) = new_dir();
        let (store, _) = CheckpointStore::open(&dir, 2, 100, Storage::new()).unwrap();
        assert_eq!(store.write(&[b'1'; 57]).unwrap_err().code, ERR_TOO_LARGE);
        store.write(&[b'1'; 56]).unwrap();
        fs::write(dir.join(file_name(5)), encode_checkpoint(5, 1, &[b'2'; 80])).unwrap();
        let latest = store.latest_valid().unwrap();
        assert_eq!(latest.checkpoint.unwrap().meta.seq, 1);
        assert!(latest.skipped[0].reason.contains("more than the limit"), "{:?}", latest.skipped);
        assert_eq!(latest.skipped[0].set_aside_as, None);
        assert_eq!(store.load(&checkpoint_id(5)).unwrap_err().code, ERR_TOO_LARGE);
    }

    #[test]
    fn ids_cannot_escape_the_directory() {
        let (_root, dir) = new_dir();
        let (store, _) = open(&dir);
        store.write(b"1").unwrap();
        for id in [
            "../../etc/passwd",
            "checkpoint-1",
            "checkpoint-00000000000000000001.ckpt",
            "checkpoint-0000000000000000001/",
            "checkpoint-/0000000000000000001",
            "checkpoint-99999999999999999999",
            "checkpoint-0000000000000000000\u{0661}",
            "",
            "/checkpoint-00000000000000000001",
        ] {
            assert_eq!(store.load(id).unwrap_err().code, ERR_INVALID_ID, "{id:?}");
        }
        assert_eq!(store.load("checkpoint-00000000000000000002").unwrap_err().code, ERR_NOT_FOUND);
        assert_eq!(store.load("checkpoint-00000000000000000001").unwrap().payload, b"1");
    }

    #[test]
    fn load_of_damaged_file_is_corrupt() {
        let (_root, dir) = new_dir();
        let (store, _) = open(&dir);
        store.write(b"1").unwrap();
        let path = dir.join(file_name(1));
        fs::write(&path, &fs::read(&path).unwrap()[..CHECKPOINT_HEADER_BYTES]).unwrap();
        assert!(!store.list().unwrap()[0].valid);
        let err = store.load(&checkpoint_id(1)).unwrap_err();
        assert_eq!(err.code, ERR_CORRUPT);
        assert!(err.message.contains("set aside as corrupt-checkpoint-"), "{err}");
    }

    #[test]
    fn second_open_is_locked_and_unsafe_dirs_refused() {
        let (root, dir) = new_dir();
        let (_store, _) = open(&dir);
        assert_eq!(CheckpointStore::open(&dir, 3, MAX, Storage::new()).unwrap_err().code, ERR_CHECKPOINT_LOCKED);

        let open_dir = root.path().join("open");
        fs::create_dir(&open_dir).unwrap();
        fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(CheckpointStore::open(&open_dir, 3, MAX, Storage::new()).unwrap_err().code, ERR_UNSAFE_DIRECTORY);
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert_eq!(CheckpointStore::open(&link, 3, MAX, Storage::new()).unwrap_err().code, ERR_UNSAFE_DIRECTORY);
    }

    /// A directory replaced by a symlink after open: new generations, pruning and setting
    /// aside still happen in the directory that was checked and locked; the symlink's
    /// target gets nothing and loses nothing.
    #[test]
    fn writes_land_in_the_directory_checked_at_open() {
        let (_root, dir) = new_dir();
        let (store, _) = CheckpointStore::open(&dir, 2, MAX, Storage::new()).unwrap();
        store.write(b"1").unwrap();
        let (moved, elsewhere) = swap_for_symlink(&dir);
        fs::write(elsewhere.join(file_name(1)), b"theirs").unwrap();

        store.write(b"2").unwrap();
        store.write(b"3").unwrap(); // prunes generation 1
        assert_eq!(names_in(&elsewhere), [file_name(1)], "nothing written or removed through the symlink");
        assert_eq!(fs::read(elsewhere.join(file_name(1))).unwrap(), b"theirs");
        assert_eq!(names(&moved), ["LOCK".to_string(), file_name(2), file_name(3)]);
        assert_eq!(store.latest_valid().unwrap().checkpoint.unwrap().payload, b"3");

        // Damage found after the swap is set aside in the real directory too.
        fs::write(moved.join(file_name(3)), b"damaged").unwrap();
        let latest = store.latest_valid().unwrap();
        assert_eq!(latest.checkpoint.unwrap().payload, b"2");
        let aside = latest.skipped[0].set_aside_as.clone().unwrap();
        assert!(moved.join(&aside).exists());
        assert_eq!(names_in(&elsewhere), [file_name(1)]);
    }

    /// The issue's reproduction: one planted aside name made every later write fail with
    /// "sequence numbers exhausted".
    #[test]
    fn a_planted_aside_name_does_not_exhaust_the_sequence() {
        let (_root, dir) = new_dir();
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(dir.join("corrupt-checkpoint-18446744073709551615.ckpt-1"), b"planted").unwrap();
        let (store, _) = open(&dir);
        assert_eq!(store.write(b"1").unwrap().seq, 1);
    }

    /// The writer keeps to the bound it enforces on open: past it, a name would be set
    /// aside as not ours on the next open, so it refuses instead.
    #[test]
    fn the_writer_refuses_past_the_bound() {
        let (_root, dir) = new_dir();
        drop(open(&dir));
        fs::write(dir.join(file_name(MAX_SEQUENCE)), encode_checkpoint(MAX_SEQUENCE, 1, b"1")).unwrap();
        let (store, skipped) = open(&dir);
        assert!(skipped.is_empty(), "{skipped:?}");
        let err = store.write(b"2").unwrap_err();
        assert_eq!(err.code, ERR_INVALID_ARGUMENT);
        assert!(err.message.contains("exhausted"), "{err}");
        assert_eq!(store.latest_valid().unwrap().checkpoint.unwrap().meta.seq, MAX_SEQUENCE);
    }

    /// Names this store never writes are set aside and reported, and their numbers are
    /// never counted on from: none of them can exhaust the sequence.
    #[test]
    fn planted_names_do_not_exhaust_the_sequence() {
        let (_root, dir) = new_dir();
        drop(open(&dir));
        let planted_aside = [
            "corrupt-checkpoint-18446744073709551615.ckpt-1", // the number past the bound
            "corrupt-checkpoint-00009007199254740991.ckpt-2", // in bound, no header naming it
            "corrupt-checkpoint-00000000000000000050.ckpt-03", // a counter with a leading zero
        ];
        let planted = [
            "checkpoint-18446744073709551615.ckpt", // parses, but past the bound
            "checkpoint-99999999999999999999.ckpt", // does not even fit in 64 bits
            "checkpoint-00000000000000000000.ckpt", // 0: never written
            "checkpoint-1.ckpt",                    // not 20 digits
            "checkpoint-00000000000000000001.ckpt.bak",
        ];
        for name in planted_aside.iter().chain(&planted) {
            fs::write(dir.join(name), b"planted").unwrap();
        }
        // In bound, well formed, but its header does not name it: set aside as damaged and
        // not counted on from either.
        fs::write(dir.join(file_name(MAX_SEQUENCE)), b"planted").unwrap();

        let (store, skipped) = open(&dir);
        let mut reported: Vec<&str> = skipped.iter().map(|s| s.id.as_str()).collect();
        reported.sort();
        let mut expected: Vec<&str> = planted.iter().map(|n| n.strip_suffix(".ckpt").unwrap_or(n)).collect();
        expected.push("checkpoint-00009007199254740991");
        expected.sort();
        assert_eq!(reported, expected, "{skipped:?}");
        assert!(skipped.iter().all(|s| s.set_aside_as.is_some()), "{skipped:?}");
        assert_eq!(store.write(b"1").unwrap().seq, 1);
        assert_eq!(store.write(b"2").unwrap().seq, 2);
        drop(store);
        let (store, skipped) = open(&dir);
        assert!(skipped.is_empty(), "set aside once: {skipped:?}");
        assert_eq!(store.write(b"3").unwrap().seq, 3);
        assert_eq!(store.load("checkpoint-18446744073709551615").unwrap_err().code, ERR_INVALID_ID);
    }

    /// A symlink, FIFO or directory under a checkpoint name is never followed, opened or
    /// counted: set aside and reported.
    #[test]
    fn non_regular_files_under_checkpoint_names_are_set_aside() {
        let (root, dir) = new_dir();
        let (store, _) = open(&dir);
        store.write(b"1").unwrap();
        drop(store);
        let outside = root.path().join("outside");
        fs::write(&outside, encode_checkpoint(5, 1, b"\"outside\"")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join(file_name(5))).unwrap();
        mkfifo(&dir.join(file_name(6)));
        fs::create_dir(dir.join(file_name(7))).unwrap();
        fs::create_dir(dir.join(format!("{TEMP_PREFIX}{}-1-1", file_name(8)))).unwrap();

        let (store, skipped) = open(&dir);
        let mut reported: Vec<(&str, bool)> =
            skipped.iter().map(|s| (s.id.as_str(), s.set_aside_as.is_some())).collect();
        reported.sort();
        assert_eq!(reported, [(&*checkpoint_id(5), true), (&*checkpoint_id(6), true), (&*checkpoint_id(7), true)]);
        assert!(skipped.iter().all(|s| s.reason.contains("not a regular file")), "{skipped:?}");
        assert_eq!(store.write(b"2").unwrap().seq, 2, "their numbers are not counted on from");
        assert_eq!(store.latest_valid().unwrap().checkpoint.unwrap().payload, b"2");
        assert_eq!(fs::read(&outside).unwrap(), encode_checkpoint(5, 1, b"\"outside\""), "target untouched");
    }

    /// A fault at each step of writing a checkpoint: one failure is absorbed by the
    /// rewrite; a second is ERR_PERSIST_FAILED with degraded set, the previous checkpoint
    /// still restores, nothing is pruned and no temp file is left.
    #[test]
    fn faults_at_each_step() {
        for (step, fail_nth) in FAULT_STEPS {
            for failures in [1u64, 2] {
                let (_root, dir) = new_dir();
                let storage = Storage::new();
                let (store, _) = CheckpointStore::open(&dir, 2, MAX, storage.clone()).unwrap();
                store.write(br#"{"gen":1}"#).unwrap();
                store.write(br#"{"gen":2}"#).unwrap();

                storage.set_fault_plan((1..=failures).fold(FaultPlan::new(), fail_nth));
                let result = store.write(br#"{"gen":3}"#);
                storage.clear_fault_plan();
                let temps = names(&dir).into_iter().filter(|n| n.starts_with(TEMP_PREFIX)).count();
                assert_eq!(temps, 0, "{step} x{failures}: temp files left");
                if failures == 1 {
                    assert_eq!(result.unwrap().seq, 3, "{step}: rewrite-once absorbs one failure");
                    assert!(!storage.is_degraded(), "{step}");
                    assert_eq!(latest_seq(&store), Some(3), "{step}");
                    assert_eq!(store.list().unwrap().len(), 2, "{step}: pruned to retain");
                } else {
                    assert_eq!(result.unwrap_err().code, ERR_PERSIST_FAILED, "{step}");
                    assert!(store.is_degraded(), "{step}");
                    let latest = store.latest_valid().unwrap();
                    assert_eq!(latest.checkpoint.unwrap().payload, br#"{"gen":2}"#, "{step}: previous still restores");
                    assert!(latest.skipped.is_empty(), "{step}");
                    assert_eq!(
                        store.list().unwrap().iter().map(|m| m.seq).collect::<Vec<_>>(),
                        vec![1, 2],
                        "{step}: nothing pruned"
                    );
                    // And after reopening, as after a crash.
                    drop(store);
                    let (store, skipped) = CheckpointStore::open(&dir, 2, MAX, Storage::new()).unwrap();
                    assert!(skipped.is_empty());
                    assert_eq!(latest_seq(&store), Some(2), "{step}");
                }
            }
        }
    }
}
