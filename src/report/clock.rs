//! Times as an operator reads them: local time with the zone shown (the zone of the process
//! that renders: `TZ`, else the system's), through the C library's own tables.

use std::ffi::CStr;

extern "C" {
    // POSIX; the libc crate does not bind it.
    fn tzset();
}

/// Reads `TZ` again (`localtime_r` and `mktime` need not), so a changed zone is seen.
pub(crate) fn read_zone() {
    // SAFETY: `tzset` takes no arguments and only updates the C library's zone state.
    unsafe { tzset() }
}

/// A moment in local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Offset from UTC in minutes (east positive).
    pub offset_minutes: i32,
    /// The zone's abbreviation (`CET`, `UTC`, `+0530`).
    pub zone: String,
}

impl LocalTime {
    /// `ms` since the Unix epoch in local time, in the zone the C library last read
    /// ([`read_zone`]: once per report, not once per time shown).
    pub fn at(ms: u64) -> LocalTime {
        let secs = (ms / 1000).min(i64::MAX as u64) as libc::time_t;
        // SAFETY: `tm` is plain old data that `localtime_r` fills; both pointers are valid for
        // the call.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&secs, &mut tm).is_null() {
                return LocalTime::utc(ms);
            }
            tm
        };
        let zone = if tm.tm_zone.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null `tm_zone` points at a NUL-terminated name the C library keeps.
            unsafe { CStr::from_ptr(tm.tm_zone) }.to_string_lossy().into_owned()
        };
        LocalTime {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
            offset_minutes: (tm.tm_gmtoff / 60) as i32,
            zone,
        }
    }

    fn utc(ms: u64) -> LocalTime {
        let days = (ms / 86_400_000) as i64;
        let (year, month, day) = civil_from_days(days);
        let secs = (ms / 1000) % 86_400;
        LocalTime {
            year,
            month,
            day,
            hour: (secs / 3600) as u32,
            minute: (secs / 60 % 60) as u32,
            second: (secs % 60) as u32,
            offset_minutes: 0,
            zone: "UTC".to_owned(),
        }
    }

    /// `02:13`.
    pub fn hm(&self) -> String {
        format!("{:02}:{:02}", self.hour, self.minute)
    }

    /// `02:13:05`.
    pub fn hms(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }

    /// `2026-12-02`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `UTC+01:00`.
    pub fn offset(&self) -> String {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let m = self.offset_minutes.unsigned_abs();
        format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
    }

    /// The zone as a reader is told it: `CET (UTC+01:00)`, or `UTC`.
    pub fn zone_label(&self) -> String {
        if self.offset_minutes == 0 && (self.zone == "UTC" || self.zone == "GMT" || self.zone.is_empty()) {
            "UTC".to_owned()
        } else if self.zone.is_empty() || self.zone.starts_with(['+', '-']) {
            self.offset()
        } else {
            format!("{} ({})", self.zone, self.offset())
        }
    }

    /// `2026-12-02 02:13:05 CET`.
    pub fn full(&self) -> String {
        format!(
            "{} {} {}",
            self.date(),
            self.hms(),
            if self.zone.is_empty() { self.offset() } else { self.zone.clone() }
        )
    }
}

/// Days since 1970-01-01 as (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A duration as people say it: `100 ms`, `45 s`, `4 min`, `1 h 20 min`, `2 d 3 h`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let s = (ms + 500) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", (s + 30) / 60),
        3600..86_400 => {
            let m = (s + 30) / 60;
            if m % 60 == 0 {
                format!("{} h", m / 60)
            } else {
                format!("{} h {} min", m / 60, m % 60)
            }
        }
        _ => {
            let h = (s + 1800) / 3600;
            if h % 24 == 0 {
                format!("{} d", h / 24)
            } else {
                format!("{} d {} h", h / 24, h % 24)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1_000_000, -1, 0, 1, 59, 60, 365, 10_957, 20_789, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(20_789), (2026, 12, 2));
    }

    #[test]
    fn durations_read_as_said() {
        assert_eq!(duration(0), "0 ms");
        assert_eq!(duration(100), "100 ms");
        assert_eq!(duration(1_600), "2 s");
        assert_eq!(duration(45_000), "45 s");
        assert_eq!(duration(240_000), "4 min");
        assert_eq!(duration(4_800_000), "1 h 20 min");
        assert_eq!(duration(7_200_000), "2 h");
        assert_eq!(duration(183_600_000), "2 d 3 h");
    }

    #[test]
    fn utc_fallback_matches_the_calendar() {
        let t = LocalTime::utc(1_764_642_785_000);
        assert_eq!((t.date(), t.hms()), ("2025-12-02".to_owned(), "02:33:05".to_owned()));
    }
}
