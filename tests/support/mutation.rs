//! Byte-level mutations of valid inputs: bit flips, byte changes, truncations,
//! insertions, deletions, duplicated spans and hostile length fields.

use super::rng::Rng;

/// Byte sequences that mean something to one of the decoders.
pub const TOKENS: &[&[u8]] = &[
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
pub fn hostile_lengths(actual: u64) -> [u64; 11] {
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
pub enum Mutation {
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
    pub fn apply(&self, bytes: &mut Vec<u8>) {
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
    pub fn keeps_order(&self) -> bool {
        !matches!(self, Mutation::Delete { .. } | Mutation::Duplicate { .. } | Mutation::Truncate { .. })
    }
}

/// One random mutation of `bytes`; `length_fields` are `(offset, width)` of the input's
/// little-endian length fields, which get hostile values.
pub fn random_mutation(rng: &mut Rng, bytes: &[u8], length_fields: &[(usize, usize, u64)]) -> Mutation {
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
pub fn mutate(rng: &mut Rng, original: &[u8], length_fields: &[(usize, usize, u64)]) -> (Vec<u8>, Vec<Mutation>) {
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

pub fn nested_arrays(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}
