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
