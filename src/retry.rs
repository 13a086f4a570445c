//! How long to wait before trying again after failures in a row: the one backoff that the
//! ACME client, the notification sender, the S3 requests and the S3 lock contenders share,
//! with jitter so that many registries (or many endpoints) that failed together do not all
//! come back at the same instant.

use std::ops::Range;
use std::time::Duration;

/// A wait of `initial` for the first `threshold` failures in a row, then doubling, never
/// more than `max`; each wait scaled by a random factor drawn from `jitter`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    threshold: u32,
    jitter: Range<f64>,
}

impl Backoff {
    /// `initial` doubling from the second failure up to `max`, without jitter.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            threshold: 1,
            jitter: 1.0..1.0,
        }
    }

    /// Waits `initial` for the first `threshold` failures (at least one) before doubling.
    pub(crate) fn threshold(self, threshold: u32) -> Self {
        Self { threshold, ..self }
    }

    /// Scales each wait by a factor in `factor` (`0.8..1.2`: up to a fifth either way).
    pub(crate) fn jitter(self, factor: Range<f64>) -> Self {
        Self {
            jitter: factor,
            ..self
        }
    }

    /// The wait after the `failures`-th failure in a row, jittered at random.
    pub(crate) fn wait(&self, failures: u32) -> Duration {
        self.wait_at(failures, rand::random())
    }

    /// The wait after the `failures`-th failure in a row, without jitter.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(self.threshold.max(1));
        let factor = 2u32.checked_pow(doublings).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// [`Backoff::wait`] with the random draw `unit` in [0, 1) given, for tests.
    pub(crate) fn wait_at(&self, failures: u32, unit: f64) -> Duration {
        let Range { start, end } = self.jitter;
        self.delay(failures)
            .mul_f64(start + (end - start) * unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn doubles_after_the_threshold_up_to_the_cap() {
        let b = Backoff::new(s(1), s(300));
        assert_eq!(
            (1..=6).map(|n| b.delay(n)).collect::<Vec<_>>(),
            [s(1), s(2), s(4), s(8), s(16), s(32)]
        );
        assert_eq!(b.delay(9), s(256));
        assert_eq!(b.delay(10), s(300));
        assert_eq!(b.delay(u32::MAX), s(300));
        // Failure 0 and threshold 0 both count as the first: never a tight loop.
        assert_eq!(b.delay(0), s(1));
        assert_eq!(b.clone().threshold(0).delay(1), s(1));
        let b = b.threshold(3);
        assert_eq!(
            (1..=5).map(|n| b.delay(n)).collect::<Vec<_>>(),
            [s(1), s(1), s(1), s(2), s(4)]
        );
    }

    #[test]
    fn jitter_scales_within_its_range() {
        let b = Backoff::new(s(60), s(6 * 3600)).jitter(0.8..1.2);
        assert_eq!(b.wait_at(1, 0.5), s(60));
        assert_eq!(b.wait_at(2, 0.5), s(120));
        assert_eq!(b.wait_at(5, 0.5), s(960));
        assert_eq!(b.wait_at(30, 0.5), s(6 * 3600));
        assert_eq!(b.wait_at(1, 0.0), s(48));
        assert!(b.wait_at(1, 0.999) < s(72));
        assert_eq!(b.wait_at(1, 7.0), s(72));
        for _ in 0..100 {
            let w = b.wait(1);
            assert!(w >= s(48) && w <= s(72), "{w:?}");
        }
        assert_eq!(Backoff::new(s(4), s(4)).wait(1), s(4));
    }
}
