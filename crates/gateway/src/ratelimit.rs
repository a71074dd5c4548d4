//! Per-organization and per-token ingest rate limits, so one noisy organization cannot take
//! the gateway's (and JetStream's) capacity from the others, and one token cannot either.
//!
//! One token bucket per organization and gateway replica: it holds at most `burst` events
//! and refills at `events_per_second`. A request takes what it needs for each of its
//! organizations; the events beyond the grant are answered "rate limited" (HTTP 429 with
//! `Retry-After`, gRPC RESOURCE_EXHAUSTED with `retry-after`) and are not stored, while the
//! other events of the request are. With N replicas behind a load balancer an organization
//! gets up to N × the rate; the README says so.
//!
//! The organization table is bounded (`max_tracked_orgs`). When it is full, buckets are
//! evicted in the order that loses the least: first the idle ones (full again: a new bucket
//! starts full, so nothing is lost), then the ones closest to idle (the most tokens left,
//! least recently used first among equals), down to 7/8 of the table so the scan is paid
//! once per many new organizations. An earlier version cleared *every* bucket when all were
//! busy, so an unscoped token spraying random organization ids reset the noisy
//! organization's bucket too (security review M18); a drained bucket is now the last to go.
//!
//! Each producer token has a bucket of its own as well (`token_events_per_second`,
//! `token_burst`), taken before the organizations' buckets: a token spraying organization
//! ids is limited itself, and so is the number of organization buckets it can make busy.
//! Tokens are configured, so that table never grows beyond their number.

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
    /// Organization buckets kept in memory; beyond this, the idle ones go first, then those
    /// closest to idle, so random organization ids can neither grow memory nor reset a busy
    /// organization's bucket.
    pub max_tracked_orgs: usize,
    /// Sustained events per second one producer token may send to one gateway replica, over
    /// all its organizations; 0 turns the limit off.
    pub token_events_per_second: u32,
    /// Events a token may send at once after being idle.
    pub token_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            events_per_second: 5_000,
            burst: 20_000,
            max_tracked_orgs: 100_000,
            // Generous: a token is usually one producer service sending for many
            // organizations; this only stops one token from taking a whole replica.
            token_events_per_second: 50_000,
            token_burst: 200_000,
        }
    }
}

impl RateLimitConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.events_per_second > 0 && self.burst == 0 {
            return Err("rate_limit.burst must be greater than zero when the limit is on".into());
        }
        if self.token_events_per_second > 0 && self.token_burst == 0 {
            return Err(
                "rate_limit.token_burst must be greater than zero when the token limit is on"
                    .into(),
            );
        }
        if self.max_tracked_orgs == 0 {
            return Err("rate_limit.max_tracked_orgs must be greater than zero".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// What one organization (or token) of one request may send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: usize,
    /// When the refused rest could be sent; zero when everything was granted.
    pub retry_after: Duration,
}

/// A bounded table of token buckets with one rate and size.
struct Buckets<K> {
    rate: f64,
    burst: f64,
    max: usize,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    fn new(rate: u32, burst: u32, max: usize) -> Self {
        Buckets {
            rate: f64::from(rate),
            burst: f64::from(burst),
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn take<Q>(&self, key: &Q, wanted: usize, now: Instant) -> Grant
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.rate == 0.0 || wanted == 0 {
            return Grant {
                granted: wanted,
                retry_after: Duration::ZERO,
            };
        }
        let mut map = self.map.lock().expect("rate limiter lock");
        if !map.contains_key(key) && map.len() >= self.max {
            self.evict(&mut map, now);
        }
        let bucket = map.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = self.tokens_at(bucket, now);
        bucket.updated = now;
        let granted = (bucket.tokens.floor() as usize).min(wanted);
        bucket.tokens -= granted as f64;
        let refused = (wanted - granted) as f64;
        let retry_after = if refused > 0.0 {
            // Time until the refused events (at most a full bucket) could pass, whole seconds
            // because that is what Retry-After carries.
            let missing = refused.min(self.burst) - bucket.tokens;
            Duration::from_secs((missing / self.rate).ceil().max(1.0) as u64)
        } else {
            Duration::ZERO
        };
        Grant {
            granted,
            retry_after,
        }
    }

    /// Gives back tokens taken for events that were refused further on.
    fn refund<Q>(&self, key: &Q, n: usize)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if self.rate == 0.0 || n == 0 {
            return;
        }
        if let Some(b) = self.map.lock().expect("rate limiter lock").get_mut(key) {
            b.tokens = (b.tokens + n as f64).min(self.burst);
        }
    }

    fn tokens_at(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        (b.tokens + elapsed * self.rate).min(self.burst)
    }

    /// Makes room: drops the idle buckets (full again: a new one starts full, nothing is
    /// lost), and if that is not enough, the ones closest to idle, least recently used first
    /// among equals, down to 7/8 of the table.
    fn evict(&self, map: &mut HashMap<K, Bucket>, now: Instant) {
        map.retain(|_, b| self.tokens_at(b, now) < self.burst);
        if map.len() < self.max {
            return;
        }
        let keep = self.max - self.max.div_ceil(8);
        let mut order: Vec<(f64, Instant, K)> = map
            .iter()
            .map(|(k, b)| (self.tokens_at(b, now).floor(), b.updated, k.clone()))
            .collect();
        // Most whole tokens first (what a fresh bucket would grant beyond them), then the
        // oldest use.
        let cmp =
            |a: &(f64, Instant, K), b: &(f64, Instant, K)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let evict = order.len() - keep;
        order.select_nth_unstable_by(evict - 1, cmp);
        for (_, _, k) in &order[..evict] {
            map.remove(k);
        }
        tracing::warn!(
            evicted = evict,
            tracked = map.len(),
            "rate limiter: too many busy organizations; dropped the buckets closest to idle (raise rate_limit.max_tracked_orgs)"
        );
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    #[cfg(test)]
    fn contains<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.map.lock().unwrap().contains_key(key)
    }
}

/// The gateway's rate limits: per organization and per producer token.
pub struct RateLimiter {
    orgs: Buckets<String>,
    /// Keyed by the token's position in `auth.tokens` ([`crate::auth::Caller::token`]).
    tokens: Buckets<usize>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        RateLimiter {
            orgs: Buckets::new(
                config.events_per_second,
                config.burst,
                config.max_tracked_orgs,
            ),
            // Bounded by the configured tokens; never evicts.
            tokens: Buckets::new(
                config.token_events_per_second,
                config.token_burst,
                usize::MAX,
            ),
        }
    }

    /// Takes up to `wanted` events from `org`'s bucket.
    pub fn take(&self, org: &str, wanted: usize, now: Instant) -> Grant {
        self.orgs.take(org, wanted, now)
    }

    /// Takes up to `wanted` events from producer token `token`'s bucket.
    pub fn take_token(&self, token: usize, wanted: usize, now: Instant) -> Grant {
        self.tokens.take(&token, wanted, now)
    }

    /// Returns `n` events to `token`'s bucket: granted by the token's limit, then refused by
    /// an organization's, so they were never sent.
    pub fn refund_token(&self, token: usize, n: usize) {
        self.tokens.refund(&token, n);
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
            token_events_per_second: 0,
            token_burst: 0,
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
        assert_eq!(l.orgs.tracked(), 3);
        // One second later all three are full again, so a fourth org replaces them.
        l.take("d", 5, t0 + Duration::from_secs(1));
        assert_eq!(l.orgs.tracked(), 1);
        assert_eq!(l.take("d", 10, t0 + Duration::from_secs(1)).granted, 5);
    }

    #[test]
    fn a_full_table_drops_the_buckets_closest_to_idle_not_a_drained_one() {
        // 8 buckets at most, 10/s, 100 each.
        let l = limiter(10, 100, 8);
        let t0 = Instant::now();
        // The noisy organization drains its bucket.
        assert_eq!(l.take("noisy", 1000, t0).granted, 100);
        // Later, a sprayer makes many organizations busy (1 event each: nearly full, none
        // idle), and the noisy one is the least recently used of all.
        let t1 = t0 + Duration::from_millis(100);
        for i in 0..50 {
            let at = t1 + Duration::from_millis(i);
            assert_eq!(l.take(&format!("spray-{i}"), 1, at).granted, 1);
        }
        let t2 = t1 + Duration::from_millis(50);
        assert!(l.orgs.tracked() <= 8, "{}", l.orgs.tracked());
        assert!(l.orgs.contains("noisy"), "the drained bucket was evicted");
        // Still limited: only what refilled since t0 (1.5 tokens in 150 ms).
        assert_eq!(l.take("noisy", 1000, t2).granted, 1);
        // The most recent sprayed organizations are kept, the older ones went first.
        assert!(l.orgs.contains("spray-49"));
        assert!(!l.orgs.contains("spray-0"));
    }

    #[test]
    fn among_equally_busy_buckets_the_least_recently_used_goes() {
        let l = limiter(10, 100, 4);
        let t0 = Instant::now();
        for (i, org) in ["a", "b", "c", "d"].iter().enumerate() {
            // Every bucket drained, at a different time.
            l.take(org, 100, t0 + Duration::from_millis(i as u64));
        }
        // "a" is used again last; "b" is now the least recently used.
        let t1 = t0 + Duration::from_millis(5);
        l.take("a", 1, t1);
        l.take("e", 1, t1);
        assert!(!l.orgs.contains("b"));
        for org in ["a", "c", "d", "e"] {
            assert!(l.orgs.contains(org), "{org}");
        }
    }

    #[test]
    fn a_token_has_its_own_bucket_and_refunds_come_back() {
        let l = RateLimiter::new(RateLimitConfig {
            token_events_per_second: 10,
            token_burst: 50,
            ..RateLimitConfig::default()
        });
        let t0 = Instant::now();
        let g = l.take_token(0, 80, t0);
        assert_eq!(g.granted, 50);
        assert_eq!(g.retry_after, Duration::from_secs(3));
        // Another token is not affected.
        assert_eq!(l.take_token(1, 80, t0).granted, 50);
        l.refund_token(0, 20);
        assert_eq!(l.take_token(0, 80, t0).granted, 20);
        // Off: everything passes.
        let off = limiter(0, 0, 1);
        assert_eq!(off.take_token(0, 1_000_000, t0).granted, 1_000_000);
    }
}
