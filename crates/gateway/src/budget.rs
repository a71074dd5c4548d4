//! The global in-flight body budget of HTTP ingest (security review M17).
//!
//! Per request, a body is bounded by `limits.max_request_bytes` (raw and decompressed), but
//! nothing bounded them together: 10 000 connections could each hold 10 MiB raw plus 10 MiB
//! decompressed. Every byte of a body the gateway holds (raw as it arrives, decompressed as
//! it is inflated) is now taken from one budget, `server.max_inflight_body_bytes`; a request
//! that would pass it is answered 503 `overloaded` with `Retry-After` at once (waiting for
//! room would hold its connection and what it already read), and what a request took is
//! given back when it ends. The `auditstream_gateway_inflight_body_bytes` gauge shows the
//! budget in use.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget, shared by all requests.
#[derive(Clone)]
pub(crate) struct Budget {
    bytes: Arc<Semaphore>,
    total: usize,
    gauge: Gauge,
}

/// The budget would be passed: the request is answered `overloaded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub(crate) total: usize,
}

impl Budget {
    pub(crate) fn new(total: usize, gauge: Gauge) -> Self {
        Budget {
            // The semaphore's ceiling is far above any memory this could describe.
            bytes: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            total,
            gauge,
        }
    }

    /// An empty hold for one request's bytes.
    pub(crate) fn hold(&self) -> Hold {
        Hold {
            budget: self.clone(),
            permit: None,
            bytes: 0,
        }
    }
}

/// Bytes one request holds; given back when dropped.
pub(crate) struct Hold {
    budget: Budget,
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Hold {
    /// Takes `n` more bytes, or fails at once if the budget has not that much left.
    pub(crate) fn take(&mut self, n: usize) -> Result<(), Exhausted> {
        if n == 0 {
            return Ok(());
        }
        let exhausted = Exhausted {
            total: self.budget.total,
        };
        let n32 = u32::try_from(n).map_err(|_| exhausted)?;
        let permit = self
            .budget
            .bytes
            .clone()
            .try_acquire_many_owned(n32)
            .map_err(|_| exhausted)?;
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        self.bytes += n;
        self.budget.gauge.inc_by(n as i64);
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // The permit goes back to the semaphore with `self.permit`.
        self.budget.gauge.dec_by(self.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_take_from_one_budget_and_give_back_when_dropped() {
        let gauge = Gauge::default();
        let budget = Budget::new(100, gauge.clone());
        let mut a = budget.hold();
        a.take(60).unwrap();
        a.take(20).unwrap();
        assert_eq!(gauge.get(), 80);
        let mut b = budget.hold();
        assert_eq!(b.take(30), Err(Exhausted { total: 100 }));
        b.take(20).unwrap();
        assert_eq!(gauge.get(), 100);
        drop(a);
        assert_eq!(gauge.get(), 20);
        b.take(80).unwrap();
        assert!(budget.hold().take(1).is_err());
        drop(b);
        assert_eq!(gauge.get(), 0);
        budget.hold().take(100).unwrap();
    }
}
