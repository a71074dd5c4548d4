//! Everything Auditstream services agree on about NATS JetStream.
//!
//! Owns the five streams of the topology ([`topology`]), the subject grammar
//! ([`subjects`]), the header names that carry event metadata ([`headers`]), the one
//! way to publish durably ([`publish`]) and how several deliveries share one message
//! ([`pack`]). It knows nothing about HTTP, gRPC or destinations;
//! services bring their own connection and call in here.

pub mod config;
pub mod headers;
pub mod pack;
pub mod permissions;
pub mod publish;
pub mod subjects;
pub mod topology;

pub use config::{NatsConfig, redact_url};
pub use permissions::Service;
pub use publish::{Ack, PublishError, connect, jetstream_context, publish_durable};
pub use topology::{
    Difference, Mismatch, StreamChange, TopologyConfig, TopologyError, TopologyGate,
    TopologyKeeper, TopologyRole, TopologyState, Verdict, VerifyError, compare_stream,
    ensure_topology, verify_topology,
};
