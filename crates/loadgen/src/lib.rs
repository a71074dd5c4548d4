//! `auditstream-loadgen`: drives Auditstream with realistic traffic and checks what arrives.
//!
//! - [`mix`]: the six event types in a weighted mix, across many organizations and
//!   workspaces, sizes drawn log-uniformly between 200 B and 16 KiB (configurable), each
//!   stamped with its send time;
//! - [`send`]: batches over HTTP (NDJSON) or gRPC at a fixed rate or as fast as allowed,
//!   with per-request ack latency; only requests answered 200 / OK count as accepted;
//! - [`receive`]: the destination (an HTTP intake for sink-http) counting ids, duplicates and
//!   end-to-end latency;
//! - [`setup`]: the tenant tree and streams for the generated organizations.
//!
//! The binary prints one JSON report and exits 1 when an accepted event never arrived.

pub mod mix;
pub mod receive;
pub mod send;
pub mod setup;
pub mod stats;
