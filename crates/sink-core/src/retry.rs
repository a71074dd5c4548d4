//! When to try again: exponential backoff with full jitter (AWS architecture blog's "full
//! jitter": a uniform delay between zero and the exponential ceiling, so retries of many
//! streams do not synchronise), honouring a destination's `Retry-After` the way Svix does:
//! never sooner than the destination asked, never later than the schedule's maximum.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Largest delay ever waited, whatever the attempt or `Retry-After`.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The exponential ceiling for retry number `attempt` (0 = first retry).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt`.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempt);
        let jittered = Duration::from_nanos(
            rng.random_range(0..=ceiling.as_nanos().min(u64::MAX as u128) as u64),
        );
        match retry_after {
            Some(asked) => jittered.max(asked.min(self.max)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn ceilings_grow_exponentially_up_to_the_maximum() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..12).map(|a| b.ceiling(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.ceiling(u32::MAX), b.max, "no overflow on absurd attempts");
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_spreads() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..1000).map(|_| b.delay(3, None, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        let below_half = delays
            .iter()
            .filter(|d| **d < Duration::from_secs(4))
            .count();
        assert!(
            (400..600).contains(&below_half),
            "uniform over [0, 8s]: {below_half} of 1000 below 4s"
        );
    }

    #[test]
    fn retry_after_is_honoured_but_clamped_to_the_maximum() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            // Asked for 30 s at attempt 0 (ceiling 1 s): wait 30 s.
            assert_eq!(
                b.delay(0, Some(Duration::from_secs(30)), &mut rng),
                Duration::from_secs(30)
            );
            // Asked for an hour: the schedule's maximum.
            assert_eq!(
                b.delay(0, Some(Duration::from_secs(3600)), &mut rng),
                Duration::from_secs(300)
            );
            // Asked for less than the jittered delay: the jittered delay is kept.
            let d = b.delay(8, Some(Duration::ZERO), &mut rng);
            assert!(d <= Duration::from_secs(256));
        }
    }

    #[test]
    fn configuration_parses_human_durations() {
        let b: Backoff = serde_json::from_str(r#"{"initial":"250ms","max":"2m"}"#).unwrap();
        assert_eq!(
            b,
            Backoff {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(120)
            }
        );
        assert!(serde_json::from_str::<Backoff>(r#"{"initial":"soon"}"#).is_err());
    }
}
