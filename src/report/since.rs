//! When a report starts: `12h` (that long ago), an ISO 8601 date or time (local unless it
//! says its zone), or ms since the Unix epoch, as the CLI's `--since` and `/report?since=`
//! take it.

use super::clock::days_from_civil;

/// The longest look back: the history keeps 7 days at the default step.
pub const DEFAULT_SINCE_MS: u64 = 12 * 3_600_000;

/// `text` as ms since the Unix epoch, relative to `now_ms`; `Err` says what it expected.
pub fn parse_since(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    let expected =
        || format!("must be a duration (30m, 12h, 7d), an ISO date or time, or ms since the epoch, got {text:?}");
    if text.is_empty() || text.len() > 40 {
        return Err(expected());
    }
    if let Some(unit) = text.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let number = &text[..text.len() - 1];
        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
            let ms = match unit {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 7 * 86_400_000,
                _ => return Err(expected()),
            };
            let n: u64 = number.parse().map_err(|_| expected())?;
            // Longer ago than 1970 is a typo, not a span.
            return n.checked_mul(ms).and_then(|back| now_ms.checked_sub(back)).ok_or_else(expected);
        }
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| expected());
    }
    iso(text).ok_or_else(expected)
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH:MM|±HHMM]`; without a zone, local time.
fn iso(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = text.get(from..from + len)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0, 4)? as i32, num(5, 2)?, num(8, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || !(1..=days_in_month[month as usize - 1]).contains(&day) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
    let mut at = 10;
    if b.len() > at && (b[at] == b'T' || b[at] == b' ') {
        hour = num(at + 1, 2)?;
        if b.get(at + 3) != Some(&b':') {
            return None;
        }
        minute = num(at + 4, 2)?;
        at += 6;
        if b.get(at) == Some(&b':') {
            second = num(at + 1, 2)?;
            at += 3;
            if b.get(at) == Some(&b'.') {
                let digits = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                let frac = &text[at + 1..at + 1 + digits.min(3)];
                millis = frac.parse::<u32>().ok()? * 10u32.pow(3 - frac.len() as u32);
                at += 1 + digits;
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
    }
    let local_seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    let rest = &text[at..];
    let epoch_seconds = match rest {
        "" => local_to_utc(year, month, day, hour, minute, second)?,
        "Z" | "z" => local_seconds,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) || rest.len() > 6 {
                return None;
            }
            let (hours, minutes) = (digits[..2].parse::<u32>().ok()?, digits[2..].parse::<u32>().ok()?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours) * 3600 + i64::from(minutes) * 60;
            local_seconds - sign * offset
        }
    };
    u64::try_from(epoch_seconds).ok().map(|s| s * 1000 + u64::from(millis))
}

/// A local wall-clock time as seconds since the epoch (`mktime`, which knows the zone's rules).
fn local_to_utc(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<i64> {
    super::clock::read_zone();
    // SAFETY: `tm` is plain old data passed by pointer to `mktime`, which reads and normalises it.
    let t = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = year - 1900;
        tm.tm_mon = month as i32 - 1;
        tm.tm_mday = day as i32;
        tm.tm_hour = hour as i32;
        tm.tm_min = minute as i32;
        tm.tm_sec = second as i32;
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    (t != -1).then_some(i64::from(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_642_785_000; // 2025-12-02T02:33:05Z

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(parse_since("12h", NOW), Ok(NOW - 12 * 3_600_000));
        assert_eq!(parse_since("30m", NOW), Ok(NOW - 1_800_000));
        assert_eq!(parse_since("7d", NOW), Ok(NOW - 7 * 86_400_000));
        assert_eq!(parse_since("90s", NOW), Ok(NOW - 90_000));
    }

    #[test]
    fn iso_times_with_a_zone_and_epoch_ms() {
        assert_eq!(parse_since("2025-12-02T02:33:05Z", NOW), Ok(NOW));
        assert_eq!(parse_since("2025-12-02T03:33:05+01:00", NOW), Ok(NOW));
        assert_eq!(parse_since("2025-12-02T02:33:05.250Z", NOW), Ok(NOW + 250));
        assert_eq!(parse_since("2025-12-02T00:00Z", NOW), Ok(NOW - (2 * 3600 + 33 * 60 + 5) * 1000));
        assert_eq!(parse_since("1764642785000", NOW), Ok(NOW));
        assert!(parse_since("2024-02-29", NOW).is_ok(), "a leap day");
    }

    #[test]
    fn bad_text_says_what_it_expected() {
        for bad in [
            "",
            "12x",
            "h",
            "-5h",
            "99999999999d",
            "2025-13-01",
            "2026-02-29",
            "2025-04-31",
            "2025-12-02T25:00Z",
            "2025-12-02T02:33+1",
            "2025-12-02T02:33+99:99",
            "yesterday",
            "1e9",
            &"9".repeat(41),
        ] {
            let error = parse_since(bad, NOW).unwrap_err();
            assert!(error.starts_with("must be"), "{bad}: {error}");
        }
    }
}
