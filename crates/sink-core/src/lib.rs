//! Delivery mechanics shared by every sink, written once (DESIGN §6). A sink crate only
//! implements [`sink::Sink`] (building a [`deliver::Destination`] from a stream's settings)
//! and calls [`runtime::sink_main`].
//!
//! - [`runtime`]: the shared durable consumer on `audit.deliver.<type>.>`, per-stream
//!   batching with memory bounds ([`batch`]), and the background tasks (config follower,
//!   backlog scan, status reports, config-service requests over NATS in [`control`]).
//! - [`lane`]: one stream's delivery: retry with backoff ([`retry`]), health ([`health`]),
//!   the backlog for broken or slow destinations, probes, drain in order, the DLQ.
//! - [`deliver`]: one batch through a destination, split by its caps and narrowed to single
//!   events on refusals; [`classify`]: what an answer means.
//! - [`object`]: the key layout and encoding shared by the object-store sinks (S3, Blob).
//!
//! The conformance suite every sink passes against its real stand-in needs the whole stack
//! (NATS, config service, router), so it lives in the test kit (`auditstream_testkit::
//! conformance`), which depends on this crate, not the other way round.

pub mod batch;
pub mod classify;
pub mod config;
pub mod control;
pub mod deliver;
pub mod event;
pub mod health;
mod lane;
pub mod metrics;
pub mod object;
pub mod retry;
pub mod runtime;
pub mod sink;

pub use config::SinkConfig;
pub use deliver::{Answer, Destination, RequestCaps};
pub use event::Event;
pub use runtime::{Listeners, run, sink_main};
pub use sink::Sink;
