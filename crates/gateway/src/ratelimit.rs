//! Per-organization ingest rate limits, so one noisy organization cannot take the gateway's
//! (and JetStream's) capacity from the others.
//!
//! One token bucket per organization and gateway replica: it holds at most `burst` events
//! and refills at `events_per_second`. A request takes what it needs for each of its
//! organizations; the events beyond the grant are answered "rate limited" (HTTP 429 with
//! `Retry-After`, gRPC RESOURCE_EXHAUSTED with `retry-after`) and are not stored, while the
//! other events of the request are. With N replicas behind a load balancer an organization
//! gets up to N × the rate; the README says so.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained events per second one organization may send to one gateway replica;
    /// 0 turns the limit off.
    pub events_per_second: u32,
    /// Events an organization may send at once after being idle (the bucket size).
    pub burst: u32,
    /// Buckets kept in memory; beyond this, buckets of idle organizations (full again) are
    /// dropped, so random organization ids cannot grow memory without bound.
    pub max_tracked_orgs: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            events_per_second: 5_000,
            burst: 20_000,
            max_tracked_orgs: 100_000,
        }
    }
}

impl RateLimitConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.events_per_second > 0 && self.burst == 0 {
            return Err("rate_limit.burst must be greater than zero when the limit is on".into());
        }
        if self.max_tracked_orgs == 0 {
            return Err("rate_limit.max_tracked_orgs must be greater than zero".into());
        }
        Ok(())
    }
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// What one organization of one request may send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: usize,
    /// When the refused rest could be sent; zero when everything was granted.
    pub retry_after: Duration,
}

pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        RateLimiter {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes up to `wanted` events from `org`'s bucket.
    pub fn take(&self, org: &str, wanted: usize, now: Instant) -> Grant {
        let rate = f64::from(self.config.events_per_second);
        if rate == 0.0 || wanted == 0 {
            return Grant {
                granted: wanted,
                retry_after: Duration::ZERO,
            };
        }
        let burst = f64::from(self.config.burst);
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if !buckets.contains_key(org) && buckets.len() >= self.config.max_tracked_orgs {
            Self::sweep(&mut buckets, now, rate, burst);
        }
        let bucket = buckets.entry(org.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        let granted = (bucket.tokens.floor() as usize).min(wanted);
        bucket.tokens -= granted as f64;
        let refused = (wanted - granted) as f64;
        let retry_after = if refused > 0.0 {
            // Time until the refused events (at most a full bucket) could pass, whole seconds
            // because that is what Retry-After carries.
            let missing = refused.min(burst) - bucket.tokens;
            Duration::from_secs((missing / rate).ceil().max(1.0) as u64)
        } else {
            Duration::ZERO
        };
        Grant {
            granted,
            retry_after,
        }
    }

    /// Drops the buckets that are full again (idle organizations lose nothing: a new bucket
    /// starts full); if every bucket is busy, drops them all rather than grow further.
    fn sweep(buckets: &mut HashMap<String, Bucket>, now: Instant, rate: f64, burst: f64) {
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst
        });
        if !buckets.is_empty() {
            tracing::warn!(
                tracked = buckets.len(),
                "rate limiter: too many busy organizations; resetting every bucket (raise rate_limit.max_tracked_orgs)"
            );
            buckets.clear();
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: u32, burst: u32, max: usize) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            events_per_second: rate,
            burst,
            max_tracked_orgs: max,
        })
    }

    #[test]
    fn a_bucket_grants_its_burst_then_refills_at_the_rate() {
        let l = limiter(100, 250, 10);
        let t0 = Instant::now();
        assert_eq!(l.take("a", 200, t0).granted, 200);
        let g = l.take("a", 100, t0);
        assert_eq!(g.granted, 50);
        // 50 refused, bucket empty: 50 / 100 per second → rounded up to 1 s.
        assert_eq!(g.retry_after, Duration::from_secs(1));
        assert_eq!(l.take("a", 1, t0).granted, 0);
        // Another organization has its own bucket.
        assert_eq!(l.take("b", 250, t0).granted, 250);
        // Half a second later, 50 tokens are back.
        assert_eq!(
            l.take("a", 500, t0 + Duration::from_millis(500)).granted,
            50
        );
        let g = l.take("a", 1000, t0 + Duration::from_millis(500));
        assert_eq!(g.granted, 0);
        // Never more than a full bucket is promised: 250 / 100 → 3 s.
        assert_eq!(g.retry_after, Duration::from_secs(3));
        // Refill stops at the burst.
        assert_eq!(l.take("a", 1000, t0 + Duration::from_secs(60)).granted, 250);
    }

    #[test]
    fn zero_rate_is_off() {
        let l = limiter(0, 0, 1);
        assert_eq!(l.take("a", 1_000_000, Instant::now()).granted, 1_000_000);
    }

    #[test]
    fn idle_buckets_are_dropped_when_too_many_are_tracked() {
        let l = limiter(10, 10, 3);
        let t0 = Instant::now();
        for org in ["a", "b", "c"] {
            l.take(org, 1, t0);
        }
        assert_eq!(l.tracked(), 3);
        // One second later all three are full again, so a fourth org replaces them.
        l.take("d", 5, t0 + Duration::from_secs(1));
        assert_eq!(l.tracked(), 1);
        assert_eq!(l.take("d", 10, t0 + Duration::from_secs(1)).granted, 5);
    }
}
