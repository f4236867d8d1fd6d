//! Chart primitives for the HTML report: the time and value scales of a plot, axis ticks
//! (time ticks on local-time boundaries, 3–5 round value ticks), and series as SVG path
//! data thinned to the plot's resolution (min/max per column, so peaks survive) and broken
//! at gaps in the record.

use std::fmt::Write;

use super::clock::LocalTime;
use super::model::Point;

/// Width of every chart's `viewBox`, in user units.
pub const VIEW_WIDTH: f64 = 1000.0;
/// Columns a series is thinned to are this many user units wide (about one per 2 px).
pub const COLUMN_WIDTH: f64 = 2.0;
/// A point starting later than the previous point's start + this × its step begins a new
/// line (a gap in the record: the service was down, or recording off); up to
/// `COVERED_GAP_STEPS` empty buckets are the loop's rhythm, not a gap.
pub const GAP_FACTOR: f64 = super::model::COVERED_GAP_STEPS as f64 + 1.5;
/// At most this many time ticks on an axis.
const MAX_TIME_TICKS: u64 = 8;
/// Time tick intervals, finest first: one is chosen so the span has at most
/// `MAX_TIME_TICKS`.
const TIME_TICK_STEPS_MS: [u64; 21] = [
    1_000,
    2_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
    2_592_000_000,
];

/// A number for SVG coordinates and labels: at most one decimal, no `-0`, no `.0`.
pub fn num(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    let rounded = if rounded == 0.0 || !rounded.is_finite() { 0.0 } else { rounded };
    if rounded.fract() == 0.0 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded:.1}")
    }
}

/// The rectangle a plot draws in and the two scales: time `since..until` across, values
/// `lo..hi` up.
#[derive(Debug, Clone, Copy)]
pub struct Plot {
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    pub since_ms: u64,
    pub until_ms: u64,
    pub lo: f64,
    pub hi: f64,
}

impl Plot {
    /// The x of time `t`, clamped to the plot (a bucket that began before `since` starts at
    /// the left edge).
    pub fn x(&self, t_ms: f64) -> f64 {
        let span = (self.until_ms.saturating_sub(self.since_ms)).max(1) as f64;
        let at = ((t_ms - self.since_ms as f64) / span).clamp(0.0, 1.0);
        self.left + at * (self.right - self.left)
    }

    /// The y of `value`, clamped to the plot.
    pub fn y(&self, value: f64) -> f64 {
        let range = if self.hi > self.lo { self.hi - self.lo } else { 1.0 };
        let at = ((value - self.lo) / range).clamp(0.0, 1.0);
        self.bottom - at * (self.bottom - self.top)
    }

    /// Path data for a series' line (through each column's `max`) and for its min–max band
    /// (empty where min and max agree everywhere). Linear in the points; at most one vertex
    /// per `COLUMN_WIDTH` for the line (two for the band); a gap starts a new subpath.
    pub fn series_paths(&self, points: &[Point]) -> (String, String) {
        let mut line = String::new();
        let mut band = String::new();
        for run in runs(points) {
            let columns = self.columns(run);
            let Some(first) = columns.first() else { continue };
            let _ = write!(line, "M{} {}", num(first.x), num(self.y(first.hi)));
            if columns.len() == 1 {
                // A lone bucket: a zero-length segment, drawn as a dot by the round cap.
                line.push_str("h0");
                continue;
            }
            for c in &columns[1..] {
                let _ = write!(line, "L{} {}", num(c.x), num(self.y(c.hi)));
            }
            if columns.iter().any(|c| c.lo < c.hi) {
                let _ = write!(band, "M{} {}", num(first.x), num(self.y(first.hi)));
                for c in &columns[1..] {
                    let _ = write!(band, "L{} {}", num(c.x), num(self.y(c.hi)));
                }
                for c in columns.iter().rev() {
                    let _ = write!(band, "L{} {}", num(c.x), num(self.y(c.lo)));
                }
                band.push('Z');
            }
        }
        (line, band)
    }

    /// A run's points folded into columns of `COLUMN_WIDTH`: least min and greatest max of
    /// the points whose bucket centre falls in each.
    fn columns(&self, run: &[Point]) -> Vec<Column> {
        let mut columns: Vec<Column> = Vec::new();
        let mut current: Option<(i64, Column)> = None;
        for p in run {
            let x = self.x(p.t as f64 + f64::from(p.step_ms) / 2.0);
            let index = ((x - self.left) / COLUMN_WIDTH).floor() as i64;
            match &mut current {
                Some((at, c)) if *at == index => {
                    c.lo = c.lo.min(p.min);
                    c.hi = c.hi.max(p.max);
                }
                _ => {
                    if let Some((_, c)) = current.take() {
                        columns.push(c);
                    }
                    let centre = (self.left + (index as f64 + 0.5) * COLUMN_WIDTH).min(self.right);
                    current = Some((index, Column { x: centre, lo: p.min, hi: p.max }));
                }
            }
        }
        if let Some((_, c)) = current {
            columns.push(c);
        }
        columns
    }
}

#[derive(Debug, Clone, Copy)]
struct Column {
    x: f64,
    lo: f64,
    hi: f64,
}

/// The points split at gaps (a point starting later than `GAP_FACTOR` steps after the
/// previous one's start).
pub fn runs(points: &[Point]) -> impl Iterator<Item = &[Point]> {
    let mut rest = points;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let split = rest
            .windows(2)
            .position(|w| w[1].t as f64 > w[0].t as f64 + GAP_FACTOR * f64::from(w[0].step_ms))
            .map_or(rest.len(), |i| i + 1);
        let (run, tail) = rest.split_at(split);
        rest = tail;
        Some(run)
    })
}

/// Round value ticks over `lo..hi`: 3 to 5 of them, a step of 1, 2, 2.5 or 5 × 10ⁿ; the
/// first and last tick are the axis' bounds.
pub fn value_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
    let rough = (hi - lo) / 4.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= rough).unwrap_or(rough);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    (first as i64..=last as i64).map(|i| i as f64 * step).collect()
}

/// Whether times over `since..until` need their date: a day or more (the same clock time
/// would come twice).
pub fn shows_dates(since_ms: u64, until_ms: u64) -> bool {
    until_ms.saturating_sub(since_ms) >= 86_400_000
}

/// A time tick: where, and its label (`HH:MM`, `HH:MM:SS` under a minute apart, with the
/// date below over a day or more).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeTick {
    pub t_ms: u64,
    pub time: String,
    pub date: Option<String>,
}

/// Ticks over `since..until` at a round interval on local-time boundaries (whole hours,
/// local midnight for days), at most `MAX_TIME_TICKS`.
pub fn time_ticks(since_ms: u64, until_ms: u64) -> Vec<TimeTick> {
    let span = until_ms.saturating_sub(since_ms).max(1);
    let step = TIME_TICK_STEPS_MS
        .into_iter()
        .find(|s| span / s <= MAX_TIME_TICKS)
        .unwrap_or_else(|| span.div_ceil(MAX_TIME_TICKS));
    let offset_ms = i64::from(LocalTime::at(since_ms).offset_minutes) * 60_000;
    let local = since_ms as i64 + offset_ms;
    let step_i = step as i64;
    let mut t = local.div_euclid(step_i) * step_i;
    if t < local {
        t += step_i;
    }
    let with_date = shows_dates(since_ms, until_ms);
    let mut ticks = Vec::new();
    while t - offset_ms <= until_ms as i64 {
        let at = (t - offset_ms) as u64;
        let local_time = LocalTime::at(at);
        // Seconds where the ticks are closer than a minute (a short span: a test, a drill).
        let time = if step < 60_000 { local_time.hms() } else { local_time.hm() };
        ticks.push(TimeTick { t_ms: at, time, date: with_date.then(|| local_time.date()) });
        t += step_i;
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: u64, min: f64, max: f64) -> Point {
        Point { t, step_ms: 10_000, min, max, last: max }
    }

    fn plot(since_ms: u64, until_ms: u64) -> Plot {
        Plot { left: 0.0, right: 1000.0, top: 0.0, bottom: 100.0, since_ms, until_ms, lo: 0.0, hi: 100.0 }
    }

    #[test]
    fn numbers_are_short_and_never_negative_zero() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(-0.01), "0");
        assert_eq!(num(f64::NAN), "0");
    }

    #[test]
    fn a_gap_starts_a_new_subpath() {
        let points = [point(0, 1.0, 1.0), point(10_000, 2.0, 2.0), point(60_000, 3.0, 3.0), point(70_000, 4.0, 4.0)];
        assert_eq!(runs(&points).map(<[Point]>::len).collect::<Vec<_>>(), vec![2, 2]);
        let (line, band) = plot(0, 100_000).series_paths(&points);
        assert_eq!(line.matches('M').count(), 2, "{line}");
        assert!(band.is_empty(), "min == max everywhere: no band");
    }

    #[test]
    fn thinning_keeps_the_peak_and_is_bounded_by_the_width() {
        // A day of 10 s buckets: 8640 points into 500 columns; one spike of 99.
        let mut points: Vec<Point> = (0..8640).map(|i| point(i * 10_000, 10.0, 20.0)).collect();
        points[4321].max = 99.0;
        let p = plot(0, 86_400_000);
        let (line, band) = p.series_paths(&points);
        assert!(line.matches('L').count() <= 500, "{}", line.matches('L').count());
        assert!(line.contains(&format!(" {}", num(p.y(99.0)))), "the spike survives");
        assert!(band.ends_with('Z') && band.matches('L').count() <= 1000);
    }

    #[test]
    fn value_ticks_are_round_and_few() {
        assert_eq!(value_ticks(0.0, 100.0), vec![0.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(value_ticks(0.0, 62.0), vec![0.0, 20.0, 40.0, 60.0, 80.0]);
        for (lo, hi) in [(0.0, 1.0), (0.0, 7.3), (0.0, 503.0), (20.0, 95.0), (0.0, 0.0)] {
            let ticks = value_ticks(lo, hi);
            assert!((3..=5).contains(&ticks.len()), "{lo}..{hi}: {ticks:?}");
            assert!(ticks[0] <= lo && *ticks.last().unwrap() >= hi);
        }
    }

    #[test]
    fn time_ticks_fall_on_round_local_times() {
        // 12 h from 18:07 UTC; TZ is the test process's, so check only roundness and count.
        let since = 1_764_698_820_000;
        let ticks = time_ticks(since, since + 12 * 3_600_000);
        assert!((4..=8).contains(&ticks.len()), "{ticks:?}");
        assert!(ticks.iter().all(|t| t.time.ends_with(":00") && t.date.is_none()), "{ticks:?}");
        let days = time_ticks(since, since + 3 * 86_400_000);
        assert!(days.iter().all(|t| t.date.is_some()));
        // A span of seconds still has labelled ticks, with their seconds.
        let short = time_ticks(since + 300, since + 4_300);
        assert!((2..=8).contains(&short.len()), "{short:?}");
        assert!(short.iter().all(|t| t.time.len() == 8 && t.t_ms % 1000 == 0), "{short:?}");
    }
}
