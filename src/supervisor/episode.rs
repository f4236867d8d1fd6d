//! The supervisor's judgement over time: hysteresis (an episode starts and ends only after
//! enough consecutive checks agree), the recovery budget, and backoff with jitter between
//! failed attempts. Plain state machines, driven with explicit times so tests need no clock.

use crate::policy::thresholds::{BACKOFF_FIRST_MS, BACKOFF_MAX_MS};
use std::collections::VecDeque;

/// Whether the service is in an unhealthy episode.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    unhealthy_after: u32,
    healthy_after: u32,
    unhealthy_run: u32,
    healthy_run: u32,
    in_episode: bool,
}

/// What one check changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpisodeChange {
    None,
    Started,
    Ended,
}

impl Hysteresis {
    pub fn new(unhealthy_after: u32, healthy_after: u32) -> Self {
        Hysteresis { unhealthy_after, healthy_after, unhealthy_run: 0, healthy_run: 0, in_episode: false }
    }

    pub fn in_episode(&self) -> bool {
        self.in_episode
    }

    /// One check. `severe` (an unhealthy check whose fault does not flap, see
    /// `planner::bypasses_hysteresis`) starts an episode at once.
    pub fn observe(&mut self, healthy: bool, severe: bool) -> EpisodeChange {
        if healthy {
            self.healthy_run += 1;
            self.unhealthy_run = 0;
            if self.in_episode && self.healthy_run >= self.healthy_after {
                self.in_episode = false;
                return EpisodeChange::Ended;
            }
        } else {
            self.unhealthy_run += 1;
            self.healthy_run = 0;
            if !self.in_episode && (severe || self.unhealthy_run >= self.unhealthy_after) {
                self.in_episode = true;
                return EpisodeChange::Started;
            }
        }
        EpisodeChange::None
    }
}

/// At most `max` automatic recoveries in any `window_ms`.
#[derive(Debug, Clone)]
pub struct RecoveryBudget {
    pub max: u32,
    pub window_ms: f64,
    started: VecDeque<f64>,
}

impl RecoveryBudget {
    pub fn new(max: u32, window_ms: f64) -> Self {
        RecoveryBudget { max, window_ms, started: VecDeque::new() }
    }

    fn forget_old(&mut self, now_ms: f64) {
        while self.started.front().is_some_and(|&t| now_ms - t >= self.window_ms) {
            self.started.pop_front();
        }
    }

    /// Recoveries started inside the window.
    pub fn used(&mut self, now_ms: f64) -> u32 {
        self.forget_old(now_ms);
        self.started.len() as u32
    }

    /// Recoveries started inside the window at `now_ms`, without forgetting older ones.
    pub fn used_at(&self, now_ms: f64) -> u32 {
        self.started.iter().filter(|&&t| now_ms - t < self.window_ms).count() as u32
    }

    /// Takes one recovery from the budget if there is one left.
    pub fn try_take(&mut self, now_ms: f64) -> bool {
        if self.used(now_ms) >= self.max {
            return false;
        }
        self.started.push_back(now_ms);
        true
    }
}

/// Doubling backoff between failed attempts, with jitter.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
    not_before_ms: f64,
}

impl Backoff {
    /// The wait after `failures` failures in a row, before jitter.
    pub fn base_delay_ms(failures: u32) -> f64 {
        if failures == 0 {
            return 0.0;
        }
        (BACKOFF_FIRST_MS * 2f64.powi(failures.min(30) as i32 - 1)).min(BACKOFF_MAX_MS)
    }

    /// `jitter` in [0, 1): the share of up to half the delay taken off.
    pub fn failed(&mut self, now_ms: f64, jitter: f64) {
        self.failures += 1;
        let delay = Self::base_delay_ms(self.failures);
        self.not_before_ms = now_ms + delay * (1.0 - 0.5 * jitter.clamp(0.0, 1.0));
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.not_before_ms = 0.0;
    }

    pub fn ready(&self, now_ms: f64) -> bool {
        now_ms >= self.not_before_ms
    }

    pub fn not_before_ms(&self) -> Option<f64> {
        (self.failures > 0).then_some(self.not_before_ms)
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A jitter value in [0, 1) without a random-number crate: the clock's low bits, hashed.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    (RandomState::new().hash_one(nanos) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_noisy_sample_neither_starts_nor_ends_an_episode() {
        let mut h = Hysteresis::new(2, 2);
        assert_eq!(h.observe(false, false), EpisodeChange::None);
        assert_eq!(h.observe(true, false), EpisodeChange::None);
        assert_eq!(h.observe(false, false), EpisodeChange::None);
        assert_eq!(h.observe(false, false), EpisodeChange::Started);
        assert!(h.in_episode());
        assert_eq!(h.observe(false, false), EpisodeChange::None);
        assert_eq!(h.observe(true, false), EpisodeChange::None);
        assert_eq!(h.observe(false, false), EpisodeChange::None);
        assert_eq!(h.observe(true, false), EpisodeChange::None);
        assert_eq!(h.observe(true, false), EpisodeChange::Ended);
        assert!(!h.in_episode());
        let mut eager = Hysteresis::new(1, 1);
        assert_eq!(eager.observe(false, false), EpisodeChange::Started);
        assert_eq!(eager.observe(true, false), EpisodeChange::Ended);
    }

    #[test]
    fn a_severe_check_starts_an_episode_at_once() {
        let mut h = Hysteresis::new(3, 2);
        assert_eq!(h.observe(false, true), EpisodeChange::Started);
        assert_eq!(h.observe(false, true), EpisodeChange::None, "already in the episode");
        assert_eq!(h.observe(true, false), EpisodeChange::None, "ending still takes healthyAfter checks");
        assert_eq!(h.observe(true, false), EpisodeChange::Ended);
    }

    #[test]
    fn budget_is_a_sliding_window() {
        let mut b = RecoveryBudget::new(3, 1000.0);
        assert!(b.try_take(0.0) && b.try_take(100.0) && b.try_take(200.0));
        assert!(!b.try_take(300.0));
        assert_eq!(b.used_at(999.0), 3);
        assert_eq!(b.used_at(1050.0), 2);
        assert_eq!(b.used(999.0), 3);
        assert!(b.try_take(1000.0), "the first one left the window");
        assert!(!b.try_take(1001.0));
        let mut none = RecoveryBudget::new(0, 1000.0);
        assert!(!none.try_take(0.0));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        assert_eq!(Backoff::base_delay_ms(0), 0.0);
        assert_eq!(Backoff::base_delay_ms(1), 1000.0);
        assert_eq!(Backoff::base_delay_ms(3), 4000.0);
        assert_eq!(Backoff::base_delay_ms(40), BACKOFF_MAX_MS);
        let mut b = Backoff::default();
        assert!(b.ready(0.0));
        b.failed(0.0, 0.0);
        assert!(!b.ready(999.0) && b.ready(1000.0));
        b.failed(1000.0, 1.0);
        assert_eq!(b.not_before_ms(), Some(2000.0), "2000 ms, half taken off");
        b.succeeded();
        assert!(b.ready(0.0));
        assert_eq!(b.not_before_ms(), None);
        let j: Vec<f64> = (0..100).map(|_| jitter()).collect();
        assert!(j.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(j.iter().any(|v| *v != j[0]));
    }
}
