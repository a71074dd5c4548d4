//! The router: for every ingested event, the streams it belongs to, and for each of them the
//! message to deliver.
//!
//! Owns the per-event pipeline (place the workspace in the directory, resolve with
//! `model::routing`, filter by the stream's selection, enrich, render the template) and the
//! consumer that runs it: one durable pull consumer on AUDIT_INGEST shared by all replicas;
//! an ingest message is acked only after every delivery message it produced has its PubAck,
//! otherwise it is redelivered. It keeps no configuration of its own: the routing table is
//! rebuilt from `config-client`'s view at every revision.

pub mod config;
mod dead_letter;
mod deliver;
pub mod enrich;
pub mod metrics;
mod park;
pub mod pipeline;
mod run;
pub mod table;

pub use config::RouterConfig;
pub use run::{Listeners, run};
