//! Forecast of memory exhaustion, per signal (each GPU; host/cgroup memory), from the
//! recent fast samples. Pure and deterministic: times are inputs, nothing reads a clock.
//!
//! The estimator, in order:
//! - **Trend**: the Theil–Sen slope (the median of the slopes between every pair of
//!   samples) over the last [`ForecastPolicy::trend_ms`], and the level fitted at the
//!   latest sample (the median of `used − slope × age`). A single spike moves neither.
//! - **Agreement**: at least [`ForecastPolicy::min_rising_fraction`] of those pairwise
//!   slopes must be positive (noise around a flat line gives about half; a step gives
//!   at most about half), over at least [`ForecastPolicy::min_span_ms`].
//! - **New highs**: the fitted level must exceed the highest sample of the rest of the
//!   [`ForecastPolicy::window_ms`] (older than the trend) by
//!   [`ForecastPolicy::new_high_margin`] of the capacity. An allocator that grows and frees
//!   to the same peak never makes a new high, so its ramps never raise the forecast.
//! - **Peak trend**: where memory fell by more than [`ForecastPolicy::freed_fraction`] of
//!   the capacity inside the window (the allocator frees), the slope used is the lesser of
//!   the trend and the rise of the fitted level over that earlier peak: how fast the peaks
//!   climb, not how fast one ramp climbs.
//! - **Not just freed**: the latest sample must not lie more than `freed_fraction` of the
//!   capacity below the highest recent sample (the robust fit would take a sample just
//!   after a free for an outlier).
//! - **Confirmation**: all of the above, with the projected exhaustion inside the horizon,
//!   on every sample for [`ForecastPolicy::confirm_ms`].
//!
//! "Exhaustion" is `used` reaching `total` (`eta_ms`); the time until the monitors'
//! threshold is reported beside it (`eta_threshold_ms`). The forecast is raised when
//! `eta_ms < horizon_ms` and clears with hysteresis: when the slope is no longer positive,
//! fewer than [`ForecastPolicy::clear_rising_fraction`] of the pairwise slopes rise, the
//! level falls back under the earlier peak, the latest two samples lie below the recent
//! peak (memory freed), or `eta_ms` exceeds
//! [`ForecastPolicy::clear_horizon_factor`] × the horizon.
//!
//! The new-high and peak-trend rules overlap on purpose: either alone keeps a sawtooth
//! whose peaks do not climb quiet; the new-high rule also covers frees under
//! `freed_fraction`, the peak-trend rule gives a climbing sawtooth the pace of its peaks.
//!
//! What it does not do: a step (memory jumping to 99% at once) has no trend and does not
//! raise the forecast; the crossing detector (`sampling::fast`) confirms that in two fast
//! samples. The first ramp of an allocator, from a flat baseline, is a leak as far as any
//! trend can tell: if it keeps rising for 12 to 14 s (the fit's span and the confirmation,
//! at 1 Hz) towards exhaustion within the horizon, it raises the forecast, which clears at
//! the first free. Later ramps are measured against the earlier peaks, which the window
//! remembers for 45 s (`window_ms − trend_ms`): a sawtooth of a longer period looks like a
//! leak on every ramp.

use crate::policy::thresholds::{MemoryThresholds, FORECAST_HORIZON_MS};
use crate::sampling::fast::{FastSample, MemorySignal};
use std::collections::BTreeMap;

/// The most samples kept per signal. Samples closer together than `window_ms / MAX_SAMPLES`
/// are skipped, so a fast sampling rate thins out instead of shrinking the window, and the
/// O(n²) fit stays under 10⁴ pairs.
pub const MAX_SAMPLES: usize = 128;

/// The estimator's constants, defined once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastPolicy {
    /// Raise when the projected exhaustion is closer than this (`forecastHorizonMs`).
    pub horizon_ms: f64,
    /// How much history is kept: the earlier peaks a new high is measured against.
    pub window_ms: f64,
    /// The most recent part of the window, which the trend is fitted on.
    pub trend_ms: f64,
    /// The least span of the samples the trend is fitted on.
    pub min_span_ms: f64,
    /// The fewest samples the trend is fitted on.
    pub min_samples: usize,
    /// How long every sample must agree before the forecast is raised.
    pub confirm_ms: f64,
    /// The least fraction of rising pairwise slopes that raises.
    pub min_rising_fraction: f64,
    /// Below this fraction a raised forecast clears.
    pub clear_rising_fraction: f64,
    /// A raised forecast clears when the exhaustion moves beyond this × `horizon_ms`.
    pub clear_horizon_factor: f64,
    /// How far (fraction of capacity) the fitted level must be above the earlier peak.
    pub new_high_margin: f64,
    /// A fall larger than this fraction of capacity inside the window means memory is freed.
    pub freed_fraction: f64,
}

impl Default for ForecastPolicy {
    fn default() -> Self {
        ForecastPolicy {
            horizon_ms: FORECAST_HORIZON_MS.default,
            window_ms: 60_000.0,
            trend_ms: 15_000.0,
            min_span_ms: 10_000.0,
            min_samples: 5,
            confirm_ms: 4_000.0,
            min_rising_fraction: 0.7,
            clear_rising_fraction: 0.5,
            clear_horizon_factor: 1.5,
            new_high_margin: 0.005,
            freed_fraction: 0.02,
        }
    }
}

impl ForecastPolicy {
    /// The default policy with another horizon.
    pub fn with_horizon(horizon_ms: f64) -> Self {
        ForecastPolicy { horizon_ms, ..Self::default() }
    }
}

/// A projected exhaustion of one signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExhaustionForecast {
    /// The GPU index; `None` for host/cgroup memory.
    pub device: Option<u32>,
    /// Until `used` reaches `total` at the fitted slope.
    pub eta_ms: f64,
    /// Until `used` reaches `total × threshold` (0 when already above it).
    pub eta_threshold_ms: f64,
    pub slope_bytes_per_s: f64,
    /// The fitted level at `at_ms` (robust to a spike in the latest sample).
    pub used: f64,
    pub total: u64,
    pub at_ms: f64,
}

/// What a sample changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ForecastTransition {
    Raised(ExhaustionForecast),
    Cleared { device: Option<u32>, at_ms: f64 },
}

/// The trend of one signal's recent samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// The slope used for the projection, bytes per second (see "Peak trend" above).
    pub slope_bytes_per_s: f64,
    /// The Theil–Sen slope of the recent samples alone, bytes per second.
    pub fitted_slope_bytes_per_s: f64,
    /// The fitted level at the latest sample.
    pub level: f64,
    /// The fraction of pairwise slopes that are positive.
    pub rising_fraction: f64,
    /// Whether the level is above every earlier sample in the window (by the margin).
    pub new_high: bool,
    /// Whether memory fell by more than `freed_fraction` of capacity inside the window.
    pub freed: bool,
    /// How many of the latest samples (counted up to 2) lie more than `freed_fraction` of
    /// capacity below the highest recent sample: memory was just freed. The robust fit
    /// would take one or two such samples for outliers; they are not.
    pub fallen_back: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    at_ms: f64,
    used: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The trend of `points` (oldest first, the latest last), `None` while the fit lacks samples
/// or span.
fn assess(points: &[Point], total: u64, policy: &ForecastPolicy) -> Option<Trend> {
    let now = points.last()?.at_ms;
    let split = points.partition_point(|p| p.at_ms < now - policy.trend_ms);
    let (prior, recent) = points.split_at(split);
    if recent.len() < policy.min_samples.max(2) || now - recent[0].at_ms < policy.min_span_ms {
        return None;
    }
    let mut slopes = Vec::with_capacity(recent.len() * (recent.len() - 1) / 2);
    for (i, a) in recent.iter().enumerate() {
        for b in &recent[i + 1..] {
            slopes.push((b.used - a.used) / (b.at_ms - a.at_ms));
        }
    }
    let rising = slopes.iter().filter(|s| **s > 0.0).count();
    let rising_fraction = rising as f64 / slopes.len() as f64;
    let slope = median(&mut slopes); // bytes per ms
    let mut intercepts: Vec<f64> = recent.iter().map(|p| p.used - slope * (p.at_ms - now)).collect();
    let level = median(&mut intercepts);

    let capacity = total as f64;
    // The latest of the highest earlier samples: ties keep the most recent.
    let peak = prior.iter().fold(None::<Point>, |best, p| match best {
        Some(b) if b.used > p.used => Some(b),
        _ => Some(*p),
    });
    let new_high = peak.is_none_or(|p| level > p.used + policy.new_high_margin * capacity);
    let mut running_max = f64::NEG_INFINITY;
    let mut fall = 0.0f64;
    for p in points {
        running_max = running_max.max(p.used);
        fall = fall.max(running_max - p.used);
    }
    let freed = fall > policy.freed_fraction * capacity;
    let recent_peak = recent.iter().map(|p| p.used).fold(f64::NEG_INFINITY, f64::max);
    let fallen_back =
        recent.iter().rev().take(2).take_while(|p| p.used < recent_peak - policy.freed_fraction * capacity).count();
    let effective = match peak {
        Some(p) if freed => slope.min((level - p.used) / (now - p.at_ms)),
        _ => slope,
    };
    Some(Trend {
        slope_bytes_per_s: effective * 1000.0,
        fitted_slope_bytes_per_s: slope * 1000.0,
        level,
        rising_fraction,
        new_high,
        freed,
        fallen_back,
    })
}

/// The forecast of one signal: its recent samples and whether a forecast stands.
#[derive(Debug, Clone)]
pub struct ExhaustionForecaster {
    device: Option<u32>,
    policy: ForecastPolicy,
    /// Oldest first; at most [`MAX_SAMPLES`], so dropping from the front is cheap.
    points: Vec<Point>,
    total: u64,
    /// Since when every sample has agreed, while not raised.
    agreeing_since: Option<f64>,
    raised: Option<ExhaustionForecast>,
}

impl ExhaustionForecaster {
    pub fn new(device: Option<u32>, policy: ForecastPolicy) -> Self {
        ExhaustionForecaster { device, policy, points: Vec::new(), total: 0, agreeing_since: None, raised: None }
    }

    /// The forecast standing now, refreshed by every sample while it stands.
    pub fn current(&self) -> Option<&ExhaustionForecast> {
        self.raised.as_ref()
    }

    /// The trend of the samples kept now (for status and tests).
    pub fn trend(&self) -> Option<Trend> {
        assess(&self.points, self.total, &self.policy)
    }

    /// Forgets the history; a standing forecast is cleared (returned as such).
    pub fn reset(&mut self, at_ms: f64) -> Option<ForecastTransition> {
        self.points.clear();
        self.agreeing_since = None;
        self.raised.take().map(|_| ForecastTransition::Cleared { device: self.device, at_ms })
    }

    /// Feeds one sample: `used` of `total` bytes at `at_ms`; `threshold` is the ratio the
    /// monitors use, for `eta_threshold_ms`. Returns what changed.
    pub fn observe(&mut self, at_ms: f64, used: u64, total: u64, threshold: f64) -> Option<ForecastTransition> {
        if !at_ms.is_finite() || total == 0 {
            return None;
        }
        let last = self.points.last().map(|p| p.at_ms);
        if last.is_some_and(|last| at_ms < last) || total != self.total {
            // A clock that went back or a capacity that changed makes the history meaningless.
            self.points.clear();
            self.agreeing_since = None;
            self.total = total;
        } else if last.is_some_and(|last| at_ms - last < self.policy.window_ms / MAX_SAMPLES as f64) {
            return None;
        }
        self.points.push(Point { at_ms, used: used as f64 });
        let expired = self.points.partition_point(|p| p.at_ms < at_ms - self.policy.window_ms);
        let excess = self.points.len().saturating_sub(MAX_SAMPLES);
        self.points.drain(..expired.max(excess));
        // Too few samples to judge (after a reset): whatever stands, stands.
        let trend = self.trend()?;
        let forecast = self.project(&trend, at_ms, threshold);
        let policy = &self.policy;
        match (self.raised.is_some(), forecast) {
            (true, forecast) => {
                let holds = trend.new_high
                    && trend.fallen_back < 2
                    && trend.rising_fraction >= policy.clear_rising_fraction
                    && forecast.is_some_and(|f| f.eta_ms <= policy.clear_horizon_factor * policy.horizon_ms);
                if holds {
                    self.raised = forecast;
                    None
                } else {
                    self.raised = None;
                    Some(ForecastTransition::Cleared { device: self.device, at_ms })
                }
            }
            (false, Some(f))
                if trend.new_high
                    && trend.fallen_back == 0
                    && trend.rising_fraction >= policy.min_rising_fraction
                    && f.eta_ms < policy.horizon_ms =>
            {
                let since = *self.agreeing_since.get_or_insert(at_ms);
                if at_ms - since >= policy.confirm_ms {
                    self.agreeing_since = None;
                    self.raised = Some(f);
                    Some(ForecastTransition::Raised(f))
                } else {
                    None
                }
            }
            (false, _) => {
                self.agreeing_since = None;
                None
            }
        }
    }

    /// The projection of `trend`, `None` unless memory is rising.
    fn project(&self, trend: &Trend, at_ms: f64, threshold: f64) -> Option<ExhaustionForecast> {
        let slope = trend.slope_bytes_per_s;
        if slope <= 0.0 || !slope.is_finite() {
            return None;
        }
        let total = self.total as f64;
        let until = |bytes: f64| (bytes - trend.level).max(0.0) / slope * 1000.0;
        Some(ExhaustionForecast {
            device: self.device,
            eta_ms: until(total),
            eta_threshold_ms: until(total * threshold),
            slope_bytes_per_s: slope,
            used: trend.level,
            total: self.total,
            at_ms,
        })
    }
}

/// One forecaster per signal of the fast sample.
#[derive(Debug, Clone)]
pub struct ExhaustionForecasts {
    policy: ForecastPolicy,
    // Bounded by the signals seen: NVML's device count plus host.
    forecasters: BTreeMap<MemorySignal, ExhaustionForecaster>,
}

impl ExhaustionForecasts {
    pub fn new(policy: ForecastPolicy) -> Self {
        ExhaustionForecasts { policy, forecasters: BTreeMap::new() }
    }

    /// Feeds every signal of `sample`, GPUs against `thresholds.gpu_memory` and host/cgroup
    /// memory against `thresholds.system_memory` (for `eta_threshold_ms`). A signal that could
    /// not be read (a lost GPU), or is missing from the sample (NVML unavailable), loses its
    /// history, and its standing forecast is cleared: no forecast outlives its data.
    pub fn observe_sample(&mut self, sample: &FastSample, thresholds: &MemoryThresholds) -> Vec<ForecastTransition> {
        let mut changes = Vec::new();
        let readings = sample.readings();
        for (signal, forecaster) in self.forecasters.iter_mut() {
            if !readings.iter().any(|(s, _)| s == signal) {
                changes.extend(forecaster.reset(sample.at_ms));
            }
        }
        for (signal, reading) in readings {
            let policy = self.policy;
            let forecaster =
                self.forecasters.entry(signal).or_insert_with(|| ExhaustionForecaster::new(signal.device(), policy));
            let change = match reading {
                Some((used, total)) => {
                    let threshold = match signal {
                        MemorySignal::Gpu(_) => thresholds.gpu_memory,
                        MemorySignal::Host => thresholds.system_memory,
                    };
                    forecaster.observe(sample.at_ms, used, total, threshold)
                }
                None => forecaster.reset(sample.at_ms),
            };
            changes.extend(change);
        }
        changes
    }

    /// Every forecast standing now.
    pub fn current(&self) -> Vec<ExhaustionForecast> {
        self.forecasters.values().filter_map(|f| f.current().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: f64 = (1u64 << 30) as f64;
    const TOTAL: u64 = 80 << 30;
    const THRESHOLD: f64 = 0.9;

    /// A deterministic noise source (xorshift), uniform in [-1, 1].
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
    }

    /// Feeds `used(t_s)` at 1 Hz for `seconds`, returning every transition with its time.
    fn run(
        forecaster: &mut ExhaustionForecaster,
        seconds: std::ops::Range<u32>,
        mut used: impl FnMut(f64) -> f64,
    ) -> Vec<(f64, ForecastTransition)> {
        seconds
            .filter_map(|s| {
                let t = s as f64;
                let bytes = used(t).clamp(0.0, TOTAL as f64) as u64;
                forecaster.observe(t * 1000.0, bytes, TOTAL, THRESHOLD).map(|c| (t, c))
            })
            .collect()
    }

    fn gpu() -> ExhaustionForecaster {
        ExhaustionForecaster::new(Some(0), ForecastPolicy::default())
    }

    fn raised_at(changes: &[(f64, ForecastTransition)]) -> Vec<f64> {
        changes.iter().filter(|(_, c)| matches!(c, ForecastTransition::Raised(_))).map(|(t, _)| *t).collect()
    }

    /// A 1 GiB/s ramp from 50% of an 80 GiB GPU crosses 90% (72 GiB) after 32 s: the
    /// forecast must come at least 10 s before, from a standing start and after a flat hour.
    #[test]
    fn linear_ramp_is_forecast_at_least_ten_seconds_before_the_threshold() {
        let crossing_s = (0.9 * 80.0 - 40.0) / 1.0;
        for flat_before in [0u32, 120] {
            let mut f = gpu();
            let start = flat_before as f64;
            let changes =
                run(&mut f, 0..flat_before + 40, |t| if t < start { 40.0 * GIB } else { (40.0 + (t - start)) * GIB });
            let raised = raised_at(&changes);
            assert_eq!(raised.len(), 1, "raised once: {changes:?}");
            let lead = crossing_s - (raised[0] - start);
            assert!(lead >= 10.0, "lead {lead} s with {flat_before} s flat before");
            println!("1 GiB/s ramp, {flat_before} s flat before: raised {} s in, lead {lead} s", raised[0] - start);
            let ForecastTransition::Raised(forecast) = changes[0].1 else { unreachable!() };
            assert_eq!(forecast.device, Some(0));
            let slope_gib = forecast.slope_bytes_per_s / GIB;
            assert!((0.8..=1.1).contains(&slope_gib), "slope {slope_gib} GiB/s");
            // The ETA agrees with the truth within the fit's error.
            let true_eta = (80.0 - 40.0 - (raised[0] - start)) * 1000.0;
            assert!((forecast.eta_ms - true_eta).abs() < 0.25 * true_eta, "{forecast:?} vs {true_eta}");
            assert!(forecast.eta_threshold_ms < forecast.eta_ms);
            assert_eq!(f.current().map(|c| c.device), Some(Some(0)), "still standing at the end of the ramp");
        }
    }

    /// At 10 Hz the history is thinned, not shortened: the same lead.
    #[test]
    fn a_ramp_sampled_at_ten_hertz_gets_the_same_lead() {
        let mut f = gpu();
        let raised = (0..400).find_map(|tenth| {
            let t = tenth as f64 / 10.0;
            f.observe(t * 1000.0, ((40.0 + t) * GIB) as u64, TOTAL, THRESHOLD).map(|_| t)
        });
        let raised = raised.expect("raised");
        assert!(32.0 - raised >= 10.0, "raised at {raised} s");
    }

    #[test]
    fn a_ramp_through_noise_is_forecast_once_and_a_plateau_clears_it_once() {
        let mut noise = Noise(0x9e3779b97f4a7c15);
        let mut f = gpu();
        // Flat 40 GiB, then 1 GiB/s for 25 s, then flat at 65 GiB; ±1% noise all along.
        let changes = run(&mut f, 0..300, |t| {
            let base = if t < 60.0 { 40.0 } else { 40.0 + (t - 60.0).min(25.0) };
            (base + 0.8 * noise.next()) * GIB
        });
        let kinds: Vec<_> = changes.iter().map(|(t, c)| (matches!(c, ForecastTransition::Raised(_)), *t)).collect();
        assert_eq!(kinds.len(), 2, "one raise, one clear, no flapping: {changes:?}");
        assert!(kinds[0].0 && !kinds[1].0);
        assert!(kinds[0].1 < 60.0 + 22.0, "raised before 72 GiB would be reached: {kinds:?}");
        assert!(kinds[1].1 > 85.0, "cleared once the plateau began: {kinds:?}");
        assert!(f.current().is_none());
    }

    #[test]
    fn noise_around_a_flat_line_never_raises() {
        for (seed, level) in [(1u64, 40.0), (2, 70.0), (3, 74.0)] {
            let mut noise = Noise(seed * 0x2545f4914f6cdd1d);
            let mut f = gpu();
            // ±2% of the GPU (±1.6 GiB) for an hour.
            let changes = run(&mut f, 0..3600, |_| (level + 1.6 * noise.next()) * GIB);
            assert_eq!(changes, vec![], "seed {seed} at {level} GiB");
        }
    }

    #[test]
    fn a_single_spike_never_raises() {
        let mut f = gpu();
        let changes = run(&mut f, 0..120, |t| if t == 60.0 { 79.5 * GIB } else { 60.0 * GIB });
        assert_eq!(changes, vec![]);
        // Nor in a slow rise that is far from exhaustion.
        let mut f = gpu();
        let changes = run(&mut f, 0..120, |t| if t == 60.0 { 79.5 * GIB } else { (30.0 + 0.05 * t) * GIB });
        assert_eq!(changes, vec![]);
    }

    /// A step has no trend: the crossing detector confirms it in two fast samples; the
    /// forecast stays out of it.
    #[test]
    fn a_step_to_99_percent_is_left_to_the_crossing_detector() {
        let mut f = gpu();
        let changes = run(&mut f, 0..180, |t| if t < 60.0 { 40.0 * GIB } else { 0.99 * 80.0 * GIB });
        assert_eq!(changes, vec![]);
    }

    /// Exhaustion in 10 minutes is no forecast at a 60 s horizon, until the last minute.
    #[test]
    fn a_slow_leak_raises_only_within_the_horizon() {
        let mut f = gpu();
        let rate = 40.0 / 600.0; // GiB/s: 40 → 80 GiB in 600 s
        let changes = run(&mut f, 0..600, |t| (40.0 + rate * t) * GIB);
        let raised = raised_at(&changes);
        assert_eq!(raised.len(), 1, "{changes:?}");
        assert!(raised[0] >= 600.0 - 60.0, "raised at {} s, exhaustion at 600 s", raised[0]);
        // With a horizon of 30 s it is raised later still.
        let mut f = ExhaustionForecaster::new(None, ForecastPolicy::with_horizon(30_000.0));
        let raised = raised_at(&run(&mut f, 0..600, |t| (40.0 + rate * t) * GIB));
        assert!(raised[0] >= 570.0, "{raised:?}");
    }

    /// `(t mod period) / period × amplitude` above `base(t)`.
    fn sawtooth(period_s: f64, amplitude_gib: f64, base: impl Fn(f64) -> f64) -> impl FnMut(f64) -> f64 {
        move |t| (base(t) + amplitude_gib * (t % period_s) / period_s) * GIB
    }

    /// An allocator that grows 4 GiB over 10 s and frees it, near the top of the GPU: each
    /// ramp alone would exhaust it within the horizon, but the peaks do not climb.
    #[test]
    fn a_sawtooth_never_raises() {
        for base in [20.0, 60.0, 70.0] {
            let mut f = gpu();
            let changes = run(&mut f, 0..1800, sawtooth(10.0, 4.0, |_| base));
            assert_eq!(changes, vec![], "10 s period at {base} GiB");
            // The same after a flat minute: the first ramp is short of the confirmation.
            let mut f = gpu();
            let changes =
                run(&mut f, 0..600, |t| if t < 60.0 { base * GIB } else { sawtooth(10.0, 4.0, |_| base)(t - 60.0) });
            assert_eq!(changes, vec![], "10 s period at {base} GiB after a flat minute");
        }
        // Fast sawtooth, 1 to 2 s periods (sampled at 1 Hz, aliased), and at 10 Hz.
        for period in [1.3, 1.5, 2.0, 2.5] {
            let mut f = gpu();
            let changes = run(&mut f, 0..1800, sawtooth(period, 4.0, |_| 70.0));
            assert_eq!(changes, vec![], "{period} s period");
        }
        let mut f = gpu();
        let mut saw = sawtooth(1.5, 4.0, |_| 70.0);
        for tenth in 0..6000 {
            let t = tenth as f64 / 10.0;
            assert_eq!(f.observe(t * 1000.0, saw(t) as u64, TOTAL, THRESHOLD), None, "10 Hz at {t} s");
        }
    }

    /// Ramps of 30 s (6 GiB, near the top): the first ramp is a leak as far as anyone can
    /// tell, and is cleared at the first free; the later ones never make a new high.
    #[test]
    fn a_slow_sawtooth_raises_at_most_on_its_first_ramp() {
        let mut f = gpu();
        let changes = run(&mut f, 0..1800, sawtooth(30.0, 6.0, |_| 68.0));
        let times: Vec<_> = changes.iter().map(|(t, _)| *t).collect();
        assert!(changes.len() <= 2 && times.iter().all(|t| *t <= 32.0), "{changes:?}");
        assert!(f.current().is_none());
    }

    /// Frees smaller than `freed_fraction` of the GPU (1.2 GiB of 80): the new-high rule
    /// alone keeps the ramps, each of which would exhaust the GPU within the horizon, quiet.
    #[test]
    fn a_shallow_sawtooth_never_raises() {
        for period in [10.0, 20.0, 40.0] {
            let mut f = gpu();
            let changes = run(&mut f, 0..1800, sawtooth(period, 1.2, |_| 72.0));
            let late: Vec<_> = changes.iter().filter(|(t, _)| *t > period + 2.0).collect();
            assert_eq!(late, Vec::<&(f64, ForecastTransition)>::new(), "{period} s period: {changes:?}");
        }
    }

    /// A sawtooth whose peaks climb does head for exhaustion: raised, at the peaks' pace.
    #[test]
    fn a_sawtooth_whose_peaks_climb_raises_at_the_pace_of_the_peaks() {
        let mut f = gpu();
        // Peaks climb 1.5 GiB per 10 s period (0.15 GiB/s) from 50 GiB: the peaks reach
        // 80 GiB at about 175 s. Within each ramp memory climbs at 0.4 GiB/s.
        let changes = run(&mut f, 0..200, sawtooth(10.0, 4.0, |t| 50.0 + 1.5 * (t / 10.0).floor()));
        let raised = raised_at(&changes);
        assert!(!raised.is_empty(), "{changes:?}");
        let ForecastTransition::Raised(first) = changes.iter().find(|(t, _)| *t == raised[0]).unwrap().1 else {
            unreachable!()
        };
        let slope_gib = first.slope_bytes_per_s / GIB;
        assert!(slope_gib < 0.3, "the peaks' pace (0.15 GiB/s), not the ramp's (0.4): {slope_gib}");
        // 0.15 GiB/s × 60 s = 9 GiB: not raised while the peaks are further than that.
        assert!(first.used > 80.0 * GIB - 0.4 * 60.0 * GIB, "{first:?}");
        assert!(raised[0] > 80.0, "raised at {} s", raised[0]);
        println!("climbing sawtooth: raised at {} s, {first:?}", raised[0]);
    }

    #[test]
    fn memory_freed_clears_a_standing_forecast() {
        let mut f = gpu();
        let changes = run(&mut f, 0..60, |t| if t < 35.0 { (40.0 + t) * GIB } else { 30.0 * GIB });
        let kinds: Vec<_> = changes.iter().map(|(_, c)| matches!(c, ForecastTransition::Raised(_))).collect();
        assert_eq!(kinds, vec![true, false], "{changes:?}");
        assert!(changes[1].0 >= 35.0 && changes[1].0 <= 38.0, "cleared soon after the free: {changes:?}");
    }

    #[test]
    fn history_is_bounded_thinned_and_reset_by_a_clock_going_back() {
        let mut f = gpu();
        // 100 Hz for a minute: thinned to the window's spacing, never more than MAX_SAMPLES.
        for ms in 0..60_000u32 {
            f.observe(ms as f64, 40 << 30, TOTAL, THRESHOLD);
            assert!(f.points.len() <= MAX_SAMPLES);
        }
        assert!(f.points.len() > MAX_SAMPLES / 2, "{}", f.points.len());
        // Older than the window is dropped.
        f.observe(200_000.0, 40 << 30, TOTAL, THRESHOLD);
        assert_eq!(f.points.len(), 1);
        // A clock going back, or another capacity, starts afresh; non-finite times are ignored.
        f.observe(1_000.0, 40 << 30, TOTAL, THRESHOLD);
        assert_eq!(f.points.len(), 1);
        f.observe(f64::NAN, 40 << 30, TOTAL, THRESHOLD);
        f.observe(2_000.0, 40 << 30, TOTAL / 2, THRESHOLD);
        assert_eq!((f.points.len(), f.total), (1, TOTAL / 2));
        assert_eq!(f.observe(3_000.0, 1, 0, THRESHOLD), None, "a zero capacity is no reading");
    }

    #[test]
    fn forecasts_per_signal_from_fast_samples_and_a_lost_gpu_clears_its_own() {
        use crate::sampling::fast::{GpuMemorySample, HostMemorySample};
        use crate::sampling::memory::MemoryLimitSource;
        let thresholds = MemoryThresholds::default();
        let mut forecasts = ExhaustionForecasts::new(ForecastPolicy::default());
        let host_total = 16u64 << 30;
        let mut all = Vec::new();
        for s in 0..30u32 {
            let t = s as f64;
            let gpu =
                |index, used: f64| GpuMemorySample { index, used: used as u64, total: TOTAL, lost: false, error: None };
            let sample = FastSample {
                at_ms: t * 1000.0,
                // GPU 0 ramps at 1 GiB/s; GPU 1 stays flat.
                gpus: vec![gpu(0, (40.0 + t) * GIB), gpu(1, 40.0 * GIB)],
                gpu_error: None,
                // Host/cgroup memory ramps at 0.25 GiB/s towards its 16 GiB limit.
                host: Some(HostMemorySample {
                    used: ((4.0 + 0.25 * t) * GIB) as u64,
                    total: host_total,
                    source: MemoryLimitSource::Cgroup,
                }),
                host_error: None,
            };
            all.extend(forecasts.observe_sample(&sample, &thresholds));
        }
        let devices: Vec<_> = forecasts.current().iter().map(|f| f.device).collect();
        assert_eq!(devices, vec![Some(0), None]);
        assert_eq!(all.len(), 2);
        let host = forecasts.current()[1];
        assert_eq!(host.total, host_total);
        assert!(host.eta_threshold_ms < host.eta_ms, "80% of the limit comes before the limit");

        // GPU 0 lost and host memory unreadable: both forecasts clear (nothing to stand on).
        assert!(!forecasts.forecasters[&MemorySignal::Gpu(1)].points.is_empty());
        let lost = FastSample {
            at_ms: 30_000.0,
            // GPU 1 is missing from this sample: its history goes too.
            gpus: vec![GpuMemorySample { index: 0, used: 0, total: 0, lost: true, error: None }],
            gpu_error: None,
            host: None,
            host_error: Some("unreadable".into()),
        };
        let changes = forecasts.observe_sample(&lost, &thresholds);
        assert_eq!(
            changes,
            vec![
                ForecastTransition::Cleared { device: Some(0), at_ms: 30_000.0 },
                ForecastTransition::Cleared { device: None, at_ms: 30_000.0 },
            ]
        );
        assert_eq!(forecasts.current(), vec![]);
        assert!(forecasts.forecasters[&MemorySignal::Gpu(1)].points.is_empty());
    }
}
