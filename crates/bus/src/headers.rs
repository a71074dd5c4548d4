//! NATS header names. Metadata travels in headers so that consumers can route and count
//! without parsing the body, and the body stays the event's JSON bytes.

use async_nats::HeaderMap;

/// JetStream's de-duplication key.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// The de-duplication key of an event on AUDIT_INGEST: `<org>.<id>`. A producer id is an
/// idempotency key within its organization only (JetStream de-duplicates across the whole
/// stream): the same id from two organizations is two events, and no organization can
/// suppress another's events by sending their ids first. Ids cannot contain `.`, so the key
/// is unambiguous. The id producers and destinations see stays the bare id.
pub fn ingest_msg_id(org_id: &str, event_id: &str) -> String {
    format!("{org_id}.{event_id}")
}
pub const EVENT_ID: &str = "Auditstream-Event-Id";
pub const ORG_ID: &str = "Auditstream-Org-Id";
pub const WORKSPACE_ID: &str = "Auditstream-Workspace-Id";
pub const EVENT_TYPE: &str = "Auditstream-Event-Type";
/// As the producer sent it (RFC 3339).
pub const OCCURRED_AT: &str = "Auditstream-Occurred-At";
/// When the gateway accepted the event (RFC 3339, UTC); becomes `audit.received_at`.
pub const RECEIVED_AT: &str = "Auditstream-Received-At";
/// The stream a delivery message is for.
pub const STREAM_ID: &str = "Auditstream-Stream-Id";
/// The config revision a change event carries.
pub const REVISION: &str = "Auditstream-Revision";
/// A config change's Ed25519 signature (base64 of 64 bytes) over its payload, by the config
/// service's feed key (`RoutingSnapshot.feed_public_key`).
pub const SIGNATURE: &str = "Auditstream-Signature";
/// A request-reply error answer (the body then holds nothing).
pub const ERROR: &str = "Auditstream-Error";
/// W3C trace context, so one trace spans gateway → router → sink.
pub const TRACEPARENT: &str = "traceparent";

/// The metadata every event message carries.
#[derive(Debug, Clone, Copy)]
pub struct EventMeta<'a> {
    pub event_id: &'a str,
    pub org_id: &'a str,
    pub workspace_id: &'a str,
    pub event_type: &'a str,
    pub occurred_at: &'a str,
    pub received_at: &'a str,
    pub traceparent: Option<&'a str>,
}

impl EventMeta<'_> {
    /// The headers for this event. `Nats-Msg-Id` is set by [`crate::publish_durable`], which
    /// knows the de-duplication key of the hop.
    pub fn to_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(EVENT_ID, self.event_id);
        h.insert(ORG_ID, self.org_id);
        h.insert(WORKSPACE_ID, self.workspace_id);
        h.insert(EVENT_TYPE, self.event_type);
        h.insert(OCCURRED_AT, self.occurred_at);
        h.insert(RECEIVED_AT, self.received_at);
        if let Some(tp) = self.traceparent {
            h.insert(TRACEPARENT, tp);
        }
        h
    }
}
