//! One event as a sink delivers it: the rendered message bytes (never re-parsed) and the
//! metadata the router put in headers, plus the JetStream handle that acks it once the
//! destination confirmed.

use async_nats::{HeaderMap, jetstream};
use auditstream_bus::headers;
use bytes::Bytes;

use crate::deliver::Item;

pub struct Event {
    pub event_id: String,
    pub org_id: String,
    pub workspace_id: String,
    pub event_type: String,
    /// RFC 3339, as the producer sent it.
    pub occurred_at: String,
    /// The rendered message: the JSON the destination receives for this event.
    pub body: Bytes,
    /// The NATS headers it arrived with (copied to the backlog and DLQ as they are).
    pub headers: HeaderMap,
    /// Acks it at the end; `None` for events built in tests or probes.
    pub(crate) message: Option<jetstream::Message>,
}

impl Event {
    /// An event without a JetStream message (tests, conformance suite, probes).
    pub fn new(event_id: &str, body: impl Into<Bytes>) -> Self {
        Event {
            event_id: event_id.to_owned(),
            org_id: String::new(),
            workspace_id: String::new(),
            event_type: String::new(),
            occurred_at: String::new(),
            body: body.into(),
            headers: HeaderMap::new(),
            message: None,
        }
    }

    /// The event a JetStream message carries (router output, backlog or replay).
    pub fn from_message(message: jetstream::Message) -> Self {
        let h = message.headers.clone().unwrap_or_default();
        let get = |name: &str| {
            h.get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        Event {
            event_id: get(headers::EVENT_ID),
            org_id: get(headers::ORG_ID),
            workspace_id: get(headers::WORKSPACE_ID),
            event_type: get(headers::EVENT_TYPE),
            occurred_at: get(headers::OCCURRED_AT),
            body: message.payload.clone(),
            headers: h,
            message: Some(message),
        }
    }
}

impl Item for Event {
    fn size(&self) -> usize {
        self.body.len()
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("event_id", &self.event_id)
            .field("bytes", &self.body.len())
            .finish()
    }
}

impl Event {
    /// Acks (the destination has it, or it moved on to the backlog or DLQ). A plain ack:
    /// JetStream redelivers if it is lost, and delivery is at-least-once anyway.
    pub(crate) async fn ack(&self) {
        if let Some(m) = &self.message
            && let Err(e) = m.ack().await
        {
            tracing::debug!(error = %e, event_id = %self.event_id, "ack lost; the event will be redelivered");
        }
    }

    /// Gives the message back for redelivery after `delay` (`None`: at once).
    pub(crate) async fn nak(&self, delay: Option<std::time::Duration>) {
        if let Some(m) = &self.message {
            let _ = m.ack_with(jetstream::AckKind::Nak(delay)).await;
        }
    }

    /// Tells JetStream the work is still going, so it is not redelivered meanwhile.
    pub(crate) async fn progress(&self) {
        if let Some(m) = &self.message {
            let _ = m.ack_with(jetstream::AckKind::Progress).await;
        }
    }

    /// When JetStream stored the message (the backlog's age), if known.
    pub(crate) fn stored_at(&self) -> Option<time::OffsetDateTime> {
        self.message
            .as_ref()
            .and_then(|m| m.info().ok())
            .map(|i| i.published)
    }

    /// The de-duplication key it arrived with (`<event>.<stream>` from the router).
    pub(crate) fn msg_id(&self, stream_id: &str) -> String {
        self.headers
            .get(headers::MSG_ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| format!("{}.{stream_id}", self.event_id))
    }
}
