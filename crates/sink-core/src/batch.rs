//! Per-stream batching by event count, serialized bytes and age, with memory bounded across
//! all streams (DESIGN §6): a cap on open batches and on buffered bytes; when either is
//! reached, the oldest open batch is flushed early rather than memory growing without bound.
//!
//! Pure and clock-injected (`now` is passed in), so the rules are tested without sleeping.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// When a stream's batch is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_events: usize,
    /// Serialized bytes, as the destination will receive them (before compression).
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// Bounds across every stream of one sink replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalLimits {
    pub max_open_batches: usize,
    pub max_buffered_bytes: usize,
}

/// Why a batch was closed, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Events,
    Bytes,
    Age,
    /// Flushed early because the replica's global bounds were reached.
    Pressure,
}

#[derive(Debug)]
pub struct Batch<T> {
    /// The stream key (`Stream::key`) of the delivery subject its events came on.
    pub stream_id: String,
    pub items: Vec<T>,
    pub bytes: usize,
    pub opened: Instant,
    pub reason: Reason,
}

struct Open<T> {
    items: Vec<T>,
    bytes: usize,
    opened: Instant,
    limits: BatchLimits,
}

pub struct Batcher<T> {
    open: HashMap<String, Open<T>>,
    buffered: usize,
    global: GlobalLimits,
}

impl<T> Batcher<T> {
    pub fn new(global: GlobalLimits) -> Self {
        Batcher {
            open: HashMap::new(),
            buffered: 0,
            global,
        }
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    pub fn open_batches(&self) -> usize {
        self.open.len()
    }

    /// Adds an item of `bytes` to `stream`'s batch. Returns the batches that are ready: this
    /// stream's if a limit is reached (an item that would push it past `max_bytes` closes the
    /// current batch first), and the oldest others if the global bounds require it.
    pub fn push(
        &mut self,
        stream: &str,
        item: T,
        bytes: usize,
        limits: BatchLimits,
        now: Instant,
    ) -> Vec<Batch<T>> {
        let mut ready = Vec::new();
        if let Some(open) = self.open.get(stream)
            && !open.items.is_empty()
            && open.bytes + bytes > limits.max_bytes
        {
            ready.push(self.close(stream, Reason::Bytes));
        }
        let open = self.open.entry(stream.to_owned()).or_insert_with(|| Open {
            items: Vec::new(),
            bytes: 0,
            opened: now,
            limits,
        });
        open.limits = limits;
        open.items.push(item);
        open.bytes += bytes;
        self.buffered += bytes;
        let (events, size) = (open.items.len(), open.bytes);
        if events >= limits.max_events {
            ready.push(self.close(stream, Reason::Events));
        } else if size >= limits.max_bytes {
            ready.push(self.close(stream, Reason::Bytes));
        }
        while self.open.len() > self.global.max_open_batches
            || self.buffered > self.global.max_buffered_bytes
        {
            let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, o)| o.opened)
                .map(|(s, _)| s.clone())
            else {
                break;
            };
            ready.push(self.close(&oldest, Reason::Pressure));
        }
        ready
    }

    /// The batches whose age limit has passed.
    pub fn due(&mut self, now: Instant) -> Vec<Batch<T>> {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| now.duration_since(o.opened) >= o.limits.max_age)
            .map(|(s, _)| s.clone())
            .collect();
        due.iter().map(|s| self.close(s, Reason::Age)).collect()
    }

    /// When the next batch comes due, for the caller's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|o| o.opened + o.limits.max_age)
            .min()
    }

    /// Everything still open (shutdown: deliver or leave unacked).
    pub fn drain(&mut self) -> Vec<Batch<T>> {
        let streams: Vec<String> = self.open.keys().cloned().collect();
        streams
            .iter()
            .map(|s| self.close(s, Reason::Pressure))
            .collect()
    }

    fn close(&mut self, stream: &str, reason: Reason) -> Batch<T> {
        let open = self.open.remove(stream).expect("closing an open batch");
        self.buffered -= open.bytes;
        Batch {
            stream_id: stream.to_owned(),
            items: open.items,
            bytes: open.bytes,
            opened: open.opened,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        max_events: 3,
        max_bytes: 100,
        max_age: Duration::from_secs(5),
    };
    const WIDE: GlobalLimits = GlobalLimits {
        max_open_batches: 100,
        max_buffered_bytes: 10_000,
    };

    fn ids(b: &Batch<u32>) -> Vec<u32> {
        b.items.clone()
    }

    #[test]
    fn closes_on_count_bytes_and_age() {
        let t0 = Instant::now();
        let mut b = Batcher::new(WIDE);
        assert!(b.push("s", 1, 10, LIMITS, t0).is_empty());
        assert!(b.push("s", 2, 10, LIMITS, t0).is_empty());
        let ready = b.push("s", 3, 10, LIMITS, t0);
        assert_eq!(
            (ids(&ready[0]), ready[0].reason, ready[0].bytes),
            (vec![1, 2, 3], Reason::Events, 30)
        );

        // An item that would overflow the byte limit closes the current batch first.
        b.push("s", 4, 60, LIMITS, t0);
        let ready = b.push("s", 5, 60, LIMITS, t0);
        assert_eq!((ids(&ready[0]), ready[0].reason), (vec![4], Reason::Bytes));
        // An item at the limit on its own is a batch of one.
        let ready = b.push("t", 6, 100, LIMITS, t0);
        assert_eq!((ids(&ready[0]), ready[0].reason), (vec![6], Reason::Bytes));

        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert!(b.due(t0 + Duration::from_secs(4)).is_empty());
        let due = b.due(t0 + Duration::from_secs(5));
        assert_eq!((ids(&due[0]), due[0].reason), (vec![5], Reason::Age));
        assert_eq!((b.open_batches(), b.buffered_bytes()), (0, 0));
    }

    #[test]
    fn global_bounds_flush_the_oldest_batches() {
        let t0 = Instant::now();
        let tight = GlobalLimits {
            max_open_batches: 2,
            max_buffered_bytes: 50,
        };
        let mut b = Batcher::new(tight);
        b.push("a", 1, 10, LIMITS, t0);
        b.push("b", 2, 10, LIMITS, t0 + Duration::from_millis(1));
        // A third stream: the oldest (a) goes out.
        let ready = b.push("c", 3, 10, LIMITS, t0 + Duration::from_millis(2));
        assert_eq!(
            (ready[0].stream_id.as_str(), ready[0].reason),
            ("a", Reason::Pressure)
        );
        // Over the byte bound: oldest again (b), until under it.
        let ready = b.push("c", 4, 31, LIMITS, t0 + Duration::from_millis(3));
        assert_eq!(
            ready
                .iter()
                .map(|r| r.stream_id.as_str())
                .collect::<Vec<_>>(),
            vec!["b"]
        );
        assert!(b.buffered_bytes() <= 50 && b.open_batches() <= 2);
    }

    #[test]
    fn memory_stays_bounded_under_many_streams() {
        let t0 = Instant::now();
        let bounds = GlobalLimits {
            max_open_batches: 50,
            max_buffered_bytes: 2_000,
        };
        let mut b = Batcher::new(bounds);
        let mut delivered = 0;
        for i in 0..10_000u32 {
            let stream = format!("s{}", i % 997);
            delivered += b
                .push(&stream, i, 7, LIMITS, t0 + Duration::from_micros(i as u64))
                .iter()
                .map(|r| r.items.len())
                .sum::<usize>();
            assert!(b.open_batches() <= 50 && b.buffered_bytes() <= 2_000);
        }
        delivered += b.drain().iter().map(|r| r.items.len()).sum::<usize>();
        assert_eq!(delivered, 10_000, "nothing dropped");
    }
}
