//! The router's dead letters: what can never be routed ends in `audit.dlq.router.<org>`
//! (AUDIT_DLQ) with its headers, its body and the reason, counted per reason. Nothing the
//! router takes in is acked without either a delivery, a parked copy, a count or this.

use std::time::Duration;

use async_nats::HeaderMap;
use auditstream_bus::{PublishError, headers, publish_durable, subjects};
use bytes::Bytes;

use crate::metrics::{Metrics, ReasonLabel};

/// Why a message could never be routed (the `reason` label and the first word of its
/// `Auditstream-Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its workspace stayed unknown for the whole parking window (or parking was full).
    UnknownWorkspace,
    /// An ingest pack of a format no replica read within `consumer.max_deliver` tries.
    UnknownPackVersion,
    /// An ingest pack that cannot be read.
    MalformedPack,
    /// A delivery larger than the server's `max_payload`.
    DeliveryTooLarge,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::UnknownWorkspace,
        Reason::UnknownPackVersion,
        Reason::MalformedPack,
        Reason::DeliveryTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownWorkspace => "unknown_workspace",
            Reason::UnknownPackVersion => "unknown_pack_version",
            Reason::MalformedPack => "malformed_pack",
            Reason::DeliveryTooLarge => "delivery_too_large",
        }
    }
}

/// One message for the router's dead letters.
pub struct DeadLetter<'a> {
    /// The organization it belongs to (its subject token); an unusable one files it under
    /// `_unknown`.
    pub org_id: &'a str,
    /// Stable for the same message, so a retried dead-lettering is stored once.
    pub msg_id: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub reason: Reason,
    /// What an operator needs to know beyond the reason.
    pub detail: String,
}

/// Stores `letter` (after its PubAck) and counts it under its reason.
pub async fn dead_letter(
    js: &async_nats::jetstream::Context,
    letter: DeadLetter<'_>,
    metrics: &Metrics,
    timeout: Duration,
) -> Result<(), PublishError> {
    let subject = subjects::router_dlq(letter.org_id)
        .or_else(|_| subjects::router_dlq("_unknown"))
        .expect("a valid fallback token");
    let mut h = letter.headers;
    h.insert(
        headers::ERROR,
        format!("{}: {}", letter.reason.as_str(), letter.detail).as_str(),
    );
    h.insert(headers::MSG_ID, letter.msg_id.as_str());
    publish_durable(js, subject, &letter.msg_id, h, letter.body, timeout).await?;
    metrics
        .dead_lettered
        .get_or_create(&ReasonLabel {
            reason: letter.reason.as_str(),
        })
        .inc();
    tracing::warn!(reason = letter.reason.as_str(), org_id = letter.org_id, detail = %letter.detail, "moved to the router's dead letters");
    Ok(())
}
