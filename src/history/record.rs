//! One fixed-size history record: a source (the host, or one GPU) over one bucket of time,
//! each signal as min/max/last over the samples folded into it. The byte layout is
//! documented in `durable::format`.

/// The latest bucket start a record may have: 9999-12-31T23:59:59.999Z (a larger one is
/// damage, and would overflow arithmetic on times).
pub const MAX_START_MS: u64 = 253_402_300_799_999;
/// Bytes per record, on disk and in every file of the history.
pub const RECORD_BYTES: usize = 88;
/// Signals per record (see [`HostSignal`] / [`GpuSignal`] for what each slot holds).
pub const SIGNALS: usize = 5;
const CRC_AT: usize = RECORD_BYTES - 4;

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Host,
    Gpu(u8),
}

impl Source {
    fn code(self) -> (u8, u8) {
        match self {
            Source::Host => (1, 0),
            Source::Gpu(index) => (2, index),
        }
    }
}

/// The signal slots of a host record.
#[derive(Debug, Clone, Copy)]
pub enum HostSignal {
    /// Host or cgroup memory in use, MiB (whichever binds).
    MemoryUsedMib = 0,
    MemoryTotalMib = 1,
    /// PSI memory `some` avg10, in hundredths of a percent.
    PsiSomeCentis = 2,
    PsiFullCentis = 3,
    /// Issues the full check found.
    Issues = 4,
}

/// The signal slots of a GPU record.
#[derive(Debug, Clone, Copy)]
pub enum GpuSignal {
    MemoryUsedMib = 0,
    MemoryTotalMib = 1,
    TemperatureC = 2,
    UtilizationPct = 3,
    PowerMilliwatts = 4,
}

/// A signal over a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    pub min: u32,
    pub max: u32,
    pub last: u32,
}

impl Stat {
    pub fn one(value: u32) -> Self {
        Stat { min: value, max: value, last: value }
    }
}

/// Flag bits of a host record (`flags_last`: at the last sample; `flags_seen`: at any).
pub const FLAG_INTAKE_CLOSED: u8 = 1;
pub const FLAG_RECOVERY_PAUSE: u8 = 2;
pub const FLAG_SUPERVISOR_PAUSE: u8 = 4;
pub const FLAG_UNHEALTHY_CHECK: u8 = 8;
/// Flag bit of a GPU record: the device was lost.
pub const FLAG_GPU_LOST: u8 = 1;

/// The supervisor's state, as a record stores it (`state_last`; `states_seen` has bit
/// `1 << code` for each state met in the bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Starting = 0,
    Healthy = 1,
    Unhealthy = 2,
    Unknown = 3,
}

impl HealthState {
    pub const ALL: [HealthState; 4] =
        [HealthState::Starting, HealthState::Healthy, HealthState::Unhealthy, HealthState::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Starting => "starting",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Unknown => "unknown",
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }
}

/// One record: `source` over the bucket `[start_ms, start_ms + step_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub source: Source,
    /// Samples folded in (saturating).
    pub samples: u16,
    pub step_ms: u32,
    pub start_ms: u64,
    pub stats: [Stat; SIGNALS],
    /// Bit `i`: signal `i` had a value in at least one sample (else its stat is 0s).
    pub known: u8,
    /// Host only (0 for a GPU).
    pub state_last: u8,
    pub states_seen: u8,
    pub flags_last: u8,
    pub flags_seen: u8,
}

impl Record {
    /// A record of one sample.
    pub fn new(source: Source, step_ms: u32, start_ms: u64) -> Self {
        Record {
            source,
            samples: 1,
            step_ms,
            start_ms,
            stats: [Stat::default(); SIGNALS],
            known: 0,
            state_last: 0,
            states_seen: 0,
            flags_last: 0,
            flags_seen: 0,
        }
    }

    /// Sets signal `slot` to `value` (a single sample); `None` leaves it unknown.
    pub fn set(&mut self, slot: usize, value: Option<u32>) {
        if let Some(v) = value {
            self.stats[slot] = Stat::one(v);
            self.known |= 1 << slot;
        }
    }

    pub fn set_flags(&mut self, flags: u8) {
        self.flags_last = flags;
        self.flags_seen = flags;
    }

    pub fn set_state(&mut self, state: HealthState) {
        self.state_last = state as u8;
        self.states_seen = 1 << state as u8;
    }

    /// When the bucket ends (`decode` keeps starts where this cannot overflow).
    pub fn end_ms(&self) -> u64 {
        self.start_ms.saturating_add(u64::from(self.step_ms))
    }

    pub fn stat(&self, slot: usize) -> Option<Stat> {
        (self.known & (1 << slot) != 0).then_some(self.stats[slot])
    }

    /// Folds `later` (the same source, samples after this record's) into this one: min and
    /// max over both, `last` and the last flags from `later`.
    pub fn fold(&mut self, later: &Record) {
        self.samples = self.samples.saturating_add(later.samples);
        for slot in 0..SIGNALS {
            let Some(theirs) = later.stat(slot) else { continue };
            self.stats[slot] = match self.stat(slot) {
                Some(ours) => Stat { min: ours.min.min(theirs.min), max: ours.max.max(theirs.max), last: theirs.last },
                None => theirs,
            };
        }
        self.known |= later.known;
        self.state_last = later.state_last;
        self.states_seen |= later.states_seen;
        self.flags_last = later.flags_last;
        self.flags_seen |= later.flags_seen;
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        let (kind, index) = self.source.code();
        out.extend_from_slice(&[kind, index]);
        out.extend_from_slice(&self.samples.to_le_bytes());
        out.extend_from_slice(&self.step_ms.to_le_bytes());
        out.extend_from_slice(&self.start_ms.to_le_bytes());
        for stat in &self.stats {
            for v in [stat.min, stat.max, stat.last] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&[self.known, self.state_last, self.states_seen, self.flags_last, self.flags_seen]);
        out.extend_from_slice(&[0; 3]);
        let crc = crc32c::crc32c(&out[at..at + CRC_AT]);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len() - at, RECORD_BYTES);
    }

    /// The record in `bytes` (exactly [`RECORD_BYTES`]), or `None` if it is damaged: a
    /// CRC mismatch, an unknown kind, reserved bytes set, a zero step, a start that is not a
    /// whole number of steps (the writer aligns every bucket) or past the year 9999, or
    /// min > max.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() != RECORD_BYTES {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        if crc32c::crc32c(&bytes[..CRC_AT]) != u32_at(CRC_AT) {
            return None;
        }
        let source = match (bytes[0], bytes[1]) {
            (1, 0) => Source::Host,
            (2, index) => Source::Gpu(index),
            _ => return None,
        };
        let mut stats = [Stat::default(); SIGNALS];
        for (slot, stat) in stats.iter_mut().enumerate() {
            let at = 16 + slot * 12;
            *stat = Stat { min: u32_at(at), max: u32_at(at + 4), last: u32_at(at + 8) };
        }
        let record = Record {
            source,
            samples: u16::from_le_bytes([bytes[2], bytes[3]]),
            step_ms: u32_at(4),
            start_ms: u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
            stats,
            known: bytes[76],
            state_last: bytes[77],
            states_seen: bytes[78],
            flags_last: bytes[79],
            flags_seen: bytes[80],
        };
        let sane = record.step_ms > 0
            && record.start_ms <= MAX_START_MS
            && record.start_ms % u64::from(record.step_ms) == 0
            && record.samples > 0
            && record.known < 1 << SIGNALS
            && bytes[81..84] == [0; 3]
            && stats.iter().all(|s| s.min <= s.max);
        sane.then_some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_record() -> Record {
        let mut r = Record::new(Source::Gpu(3), 10_000, 1_700_000_000_000);
        r.set(GpuSignal::MemoryUsedMib as usize, Some(40_000));
        r.set(GpuSignal::MemoryTotalMib as usize, Some(81_920));
        r.set(GpuSignal::TemperatureC as usize, Some(71));
        r.set(GpuSignal::PowerMilliwatts as usize, Some(350_000));
        r.set_flags(FLAG_GPU_LOST);
        r
    }

    #[test]
    fn round_trip() {
        let mut later = sample_record();
        later.set(GpuSignal::MemoryUsedMib as usize, Some(30_000));
        later.set(GpuSignal::UtilizationPct as usize, Some(99));
        later.set_flags(0);
        let mut record = sample_record();
        record.fold(&later);
        let mut bytes = Vec::new();
        record.encode(&mut bytes);
        assert_eq!(bytes.len(), RECORD_BYTES);
        let back = Record::decode(&bytes).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.samples, 2);
        assert_eq!(back.stat(0), Some(Stat { min: 30_000, max: 40_000, last: 30_000 }));
        assert_eq!(back.stat(GpuSignal::UtilizationPct as usize), Some(Stat::one(99)), "known from the later sample");
        assert_eq!((back.flags_last, back.flags_seen), (0, FLAG_GPU_LOST));

        let mut host = Record::new(Source::Host, 10_000, 50_000);
        host.set_state(HealthState::Unhealthy);
        let mut bytes = Vec::new();
        host.encode(&mut bytes);
        let back = Record::decode(&bytes).unwrap();
        assert_eq!(back.source, Source::Host);
        assert_eq!(HealthState::from_code(back.state_last), Some(HealthState::Unhealthy));
        assert_eq!(back.stat(HostSignal::Issues as usize), None);
    }

    /// Every single-bit flip anywhere in a record, and every truncation, is detected.
    #[test]
    fn every_bit_flip_and_truncation_is_detected() {
        let mut bytes = Vec::new();
        sample_record().encode(&mut bytes);
        for bit in 0..RECORD_BYTES * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Record::decode(&flipped), None, "bit {bit}");
        }
        for len in 0..RECORD_BYTES {
            assert_eq!(Record::decode(&bytes[..len]), None, "{len} bytes");
        }
    }
}
