//! A destination's health (DESIGN §6): healthy → retrying → broken → recovering → healthy.
//!
//! Pure state: callers report what happened and get back the transition, if any, so that the
//! one place that sends e-mails and status reports reacts to transitions, not to every error.

use std::time::{Duration, Instant};

use crate::classify::Class;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Transient failures since `since`; `attempt` counts retries of the current batch.
    Retrying {
        since: Instant,
        attempt: u32,
    },
    /// Deliveries stop: messages go to the backlog until a probe succeeds.
    Broken {
        since: Instant,
        reason: String,
    },
    /// A probe succeeded: the backlog drains, in order, before live traffic resumes.
    Recovering,
}

/// A change worth telling someone about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Entered broken (config error, or transient failures for longer than allowed).
    Broke { reason: String },
    /// Left broken/recovering for healthy.
    Recovered,
}

#[derive(Debug, Clone)]
pub struct DestinationHealth {
    state: Health,
    /// Transient failures lasting this long count as broken: a destination that never
    /// answers must not hold its share of the consumer forever.
    pub broken_after: Duration,
}

impl DestinationHealth {
    pub fn new(broken_after: Duration) -> Self {
        DestinationHealth {
            state: Health::Healthy,
            broken_after,
        }
    }

    pub fn state(&self) -> &Health {
        &self.state
    }

    /// Whether live deliveries may be attempted (not broken, not draining a backlog).
    pub fn accepts_live(&self) -> bool {
        matches!(self.state, Health::Healthy | Health::Retrying { .. })
    }

    /// Records the outcome of a delivery attempt.
    pub fn record(&mut self, outcome: &Class, reason: &str, now: Instant) -> Option<Transition> {
        match (outcome, &self.state) {
            (Class::Delivered | Class::TooLarge | Class::Rejected, Health::Retrying { .. }) => {
                // The destination answered; the data question is handled elsewhere.
                self.state = Health::Healthy;
                None
            }
            (Class::Delivered | Class::TooLarge | Class::Rejected, _) => None,
            (Class::Transient { .. }, Health::Healthy) => {
                self.state = Health::Retrying {
                    since: now,
                    attempt: 1,
                };
                None
            }
            (Class::Transient { .. }, Health::Retrying { since, attempt }) => {
                let since = *since;
                if now.duration_since(since) >= self.broken_after {
                    self.broke(
                        format!("failing for {:?}: {reason}", now.duration_since(since)),
                        now,
                    )
                } else {
                    self.state = Health::Retrying {
                        since,
                        attempt: attempt + 1,
                    };
                    None
                }
            }
            (
                Class::Configuration,
                Health::Healthy | Health::Retrying { .. } | Health::Recovering,
            ) => self.broke(reason.to_owned(), now),
            // Already broken: stays broken, no repeated transition (and no repeated e-mail).
            (Class::Transient { .. } | Class::Configuration, Health::Broken { .. }) => None,
            (Class::Transient { .. }, Health::Recovering) => {
                self.state = Health::Retrying {
                    since: now,
                    attempt: 1,
                };
                None
            }
        }
    }

    /// A probe (or a configuration change) showed the destination works again.
    pub fn probe_succeeded(&mut self) {
        if matches!(self.state, Health::Broken { .. }) {
            self.state = Health::Recovering;
        }
    }

    /// The backlog is drained: live traffic goes straight to the destination again.
    pub fn backlog_drained(&mut self) -> Option<Transition> {
        if self.state == Health::Recovering {
            self.state = Health::Healthy;
            return Some(Transition::Recovered);
        }
        None
    }

    fn broke(&mut self, reason: String, now: Instant) -> Option<Transition> {
        self.state = Health::Broken {
            since: now,
            reason: reason.clone(),
        };
        Some(Transition::Broke { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Class = Class::Transient { retry_after: None };

    #[test]
    fn the_full_cycle() {
        let t0 = Instant::now();
        let mut h = DestinationHealth::new(Duration::from_secs(60));
        assert_eq!(h.record(&T, "503", t0), None);
        assert!(matches!(h.state(), Health::Retrying { attempt: 1, .. }));
        assert_eq!(h.record(&T, "503", t0 + Duration::from_secs(10)), None);
        assert!(matches!(h.state(), Health::Retrying { attempt: 2, .. }));
        assert!(h.accepts_live());
        assert_eq!(
            h.record(
                &Class::Configuration,
                "403 AccessDenied",
                t0 + Duration::from_secs(11)
            ),
            Some(Transition::Broke {
                reason: "403 AccessDenied".into()
            })
        );
        assert!(!h.accepts_live());
        // Broken stays broken without a second transition.
        assert_eq!(
            h.record(&Class::Configuration, "403", t0 + Duration::from_secs(12)),
            None
        );
        assert_eq!(h.backlog_drained(), None, "not recovering yet");
        h.probe_succeeded();
        assert_eq!(h.state(), &Health::Recovering);
        assert!(!h.accepts_live(), "the backlog drains first");
        assert_eq!(h.backlog_drained(), Some(Transition::Recovered));
        assert_eq!(h.state(), &Health::Healthy);
    }

    #[test]
    fn transient_failures_for_too_long_break_the_destination() {
        let t0 = Instant::now();
        let mut h = DestinationHealth::new(Duration::from_secs(60));
        h.record(&T, "timeout", t0);
        assert_eq!(h.record(&T, "timeout", t0 + Duration::from_secs(59)), None);
        assert!(matches!(
            h.record(&T, "timeout", t0 + Duration::from_secs(61)),
            Some(Transition::Broke { reason }) if reason.contains("timeout")
        ));
    }

    #[test]
    fn an_answer_ends_retrying() {
        let t0 = Instant::now();
        let mut h = DestinationHealth::new(Duration::from_secs(60));
        h.record(&T, "429", t0);
        assert_eq!(h.record(&Class::Delivered, "", t0), None);
        assert_eq!(h.state(), &Health::Healthy);
    }
}
