//! File names of the durable families (`{prefix}{n:020}{suffix}`), and setting aside what
//! is damaged or was not written here (`corrupt-{name}-{n}`), keeping the newest few.

use super::error::{DurableError, ProblemKind, RecoveryProblem, Result, ERR_INVALID_ARGUMENT};
use super::state_dir::StateDir;
use super::storage::Storage;
use crate::durable::defaults::{CORRUPT_FILES_KEPT, MAX_SEQUENCE};
use crate::durable::dir::DirEntry;

/// Names of damaged files set aside: `corrupt-{original name}-{n}`, `n` counting up over
/// the directory so the newest are known without trusting mtimes.
pub const CORRUPT_PREFIX: &str = "corrupt-";

/// Renames damaged file `name` aside and keeps only the newest [`CORRUPT_FILES_KEPT`]
/// aside files of its `family` (e.g. `checkpoint-`). Returns the new name. Works for
/// whatever `name` is (a symlink is renamed, not followed). Counting only aside names this
/// writer produces, a planted number past [`MAX_SEQUENCE`] is never taken up; one at it
/// leaves nothing to count on to, and the file stays in place (`ERR_INVALID_ARGUMENT`).
pub(crate) fn set_aside(storage: &Storage, dir: &StateDir, name: &str, family: &str) -> Result<String> {
    let entries = dir.list()?;
    let asides: Vec<(&str, u64, &str)> =
        entries.iter().filter_map(|e| parse_aside_name(&e.name).map(|(orig, n)| (orig, n, e.name.as_str()))).collect();
    let next = asides.iter().map(|&(_, n, _)| n).max().unwrap_or(0) + 1;
    if next > MAX_SEQUENCE {
        return Err(DurableError::new(
            ERR_INVALID_ARGUMENT,
            format!("cannot set {name} aside: aside numbers are exhausted at {MAX_SEQUENCE}"),
        ));
    }
    let aside = format!("{CORRUPT_PREFIX}{name}-{next}");
    storage.rename(&dir.handle, name, &aside).map_err(|e| DurableError::io(format!("setting {name} aside"), &e))?;

    let mut family_asides: Vec<(u64, &str)> =
        asides.iter().filter(|(orig, _, _)| orig.starts_with(family)).map(|&(_, n, full)| (n, full)).collect();
    family_asides.sort_unstable_by_key(|&(n, _)| std::cmp::Reverse(n));
    // The new one is the newest; keep it and CORRUPT_FILES_KEPT - 1 of the earlier ones.
    for (_, old) in family_asides.iter().skip(CORRUPT_FILES_KEPT.saturating_sub(1)) {
        let _ = storage.remove_file(&dir.handle, old);
    }
    let _ = dir.sync(storage);
    Ok(aside)
}

/// `corrupt-{original}-{n}` → (original, n), for names [`set_aside`] produces: `n` in
/// 1..=[`MAX_SEQUENCE`], written without leading zeros or sign.
pub(crate) fn parse_aside_name(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_prefix(CORRUPT_PREFIX)?;
    let (original, n) = rest.rsplit_once('-')?;
    Some((original, parse_counter(n)?))
}

/// A number as this module writes one (`{n}`): decimal digits, no sign, no leading zero,
/// 1..=[`MAX_SEQUENCE`].
pub(crate) fn parse_counter(digits: &str) -> Option<u64> {
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n <= MAX_SEQUENCE)
}

/// A sequence number in a file name as this module writes one (`{n:020}`): exactly 20
/// decimal digits, 1..=[`MAX_SEQUENCE`]. `Err` for the right shape holding a number no
/// writer here produces (0, or past the bound).
pub(crate) fn parse_padded_seq(digits: &str) -> Option<std::result::Result<u64, String>> {
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match digits.parse::<u64>() {
        Ok(n) if (1..=MAX_SEQUENCE).contains(&n) => Ok(n),
        _ => Err(format!("sequence number {digits} is outside 1..={MAX_SEQUENCE}, which this writer never produces")),
    })
}

/// How a directory entry stands to a family of files named `{prefix}{n:020}{suffix}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    /// A regular file under a name the writer produces: sequence number `n`.
    Ours(u64),
    /// Under the family's prefix, but not something its writer produces (the name, or a
    /// symlink, directory, FIFO or device): never opened or counted; set aside.
    Foreign(String),
    /// Not of this family.
    Other,
}

impl Member {
    /// The sequence number of a file of ours.
    pub(crate) fn ours(self) -> Option<u64> {
        match self {
            Member::Ours(n) => Some(n),
            Member::Foreign(_) | Member::Other => None,
        }
    }
}

pub(crate) fn classify(entry: &DirEntry, prefix: &str, suffix: &str) -> Member {
    let Some(rest) = entry.name.strip_prefix(prefix) else { return Member::Other };
    match rest.strip_suffix(suffix).and_then(parse_padded_seq) {
        None => Member::Foreign(format!("{} is not a name this writer produces", entry.name)),
        Some(Err(reason)) => Member::Foreign(reason),
        Some(Ok(_)) if !entry.is_file => Member::Foreign(format!("{} is not a regular file", entry.name)),
        Some(Ok(n)) => Member::Ours(n),
    }
}

/// A file under a family's name that its writer did not produce, found on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForeignFile {
    pub name: String,
    pub reason: String,
    /// Where it was renamed to; `None` if that failed (the reason then says why).
    pub set_aside_as: Option<String>,
}

impl ForeignFile {
    pub(crate) fn into_problem(self) -> RecoveryProblem {
        RecoveryProblem {
            kind: ProblemKind::ForeignFile,
            file: self.name,
            offset: 0,
            reason: self.reason,
            set_aside_as: self.set_aside_as,
        }
    }
}

/// Sets aside every entry under `prefix` that is not a regular file under a name this
/// family's writer produces, so nothing later opens it or counts on from its number.
pub(crate) fn set_aside_foreign(
    storage: &Storage,
    dir: &StateDir,
    prefix: &str,
    suffix: &str,
) -> Result<Vec<ForeignFile>> {
    let mut found = Vec::new();
    for entry in dir.list()? {
        let Member::Foreign(reason) = classify(&entry, prefix, suffix) else { continue };
        found.push(set_aside_foreign_file(storage, dir, entry.name, prefix, reason));
    }
    Ok(found)
}

/// Sets `name` (of `family`, not written by its writer for `reason`) aside, saying so.
pub(crate) fn set_aside_foreign_file(
    storage: &Storage,
    dir: &StateDir,
    name: String,
    family: &str,
    reason: String,
) -> ForeignFile {
    match set_aside(storage, dir, &name, family) {
        Ok(aside) => ForeignFile { name, reason, set_aside_as: Some(aside) },
        Err(e) => ForeignFile { name, reason: format!("{reason} (could not set it aside: {e})"), set_aside_as: None },
    }
}

/// Digits of the sequence numbers in file names.
pub(crate) const SEQ_DIGITS: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::fs::test_support::state_dir;
    use std::fs;

    #[test]
    fn set_aside_keeps_newest_three_per_family() {
        let root = tempfile::tempdir().unwrap();
        let dir = state_dir(&root);
        let storage = Storage::new();
        let mut asides = Vec::new();
        for i in 0..5 {
            let name = format!("checkpoint-{i}");
            fs::write(dir.file(&name), b"bad").unwrap();
            asides.push(set_aside(&storage, &dir, &name, "checkpoint-").unwrap());
        }
        fs::write(dir.file("journal-1"), b"bad").unwrap();
        let journal_aside = set_aside(&storage, &dir, "journal-1", "journal-").unwrap();
        assert_eq!(asides[0], "corrupt-checkpoint-0-1");
        assert_eq!(journal_aside, "corrupt-journal-1-6");
        let mut left: Vec<String> =
            dir.list().unwrap().into_iter().map(|e| e.name).filter(|n| n.starts_with(CORRUPT_PREFIX)).collect();
        left.sort();
        assert_eq!(
            left,
            vec!["corrupt-checkpoint-2-3", "corrupt-checkpoint-3-4", "corrupt-checkpoint-4-5", "corrupt-journal-1-6"]
        );
    }

    /// The aside counter counts on only from numbers set_aside writes: a planted
    /// `corrupt-…-18446744073709551615` (or `-007`, `-+9`) is not one of them.
    #[test]
    fn set_aside_ignores_counters_it_did_not_write() {
        let root = tempfile::tempdir().unwrap();
        let dir = state_dir(&root);
        let storage = Storage::new();
        for planted in ["corrupt-a-18446744073709551615", "corrupt-b-007", "corrupt-c-+9", "corrupt-d-9007199254740992"]
        {
            fs::write(dir.file(planted), b"x").unwrap();
        }
        fs::write(dir.file("f-1"), b"bad").unwrap();
        assert_eq!(set_aside(&storage, &dir, "f-1", "f-").unwrap(), "corrupt-f-1-1");
        // At the bound there is no number left to count on to: refused, the file stays.
        fs::write(dir.file("corrupt-e-9007199254740991"), b"x").unwrap();
        fs::write(dir.file("f-2"), b"bad").unwrap();
        assert_eq!(set_aside(&storage, &dir, "f-2", "f-").unwrap_err().code, ERR_INVALID_ARGUMENT);
        assert!(dir.file("f-2").exists());
    }
}
