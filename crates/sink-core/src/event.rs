//! One event as a sink delivers it: the rendered message bytes (never re-parsed) and the
//! metadata the router put in headers, plus the JetStream handle that acks it once the
//! destination confirmed.
//!
//! A message may be a pack of several events (`bus::pack`). Its events share one
//! [`Carrier`]: the message is acked when the last of them is settled, and given back for
//! redelivery (the whole pack: duplicates, never loss) as soon as one of them is.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_nats::{HeaderMap, jetstream};
use auditstream_bus::{headers, pack};
use bytes::Bytes;

use crate::deliver::Item;

pub struct Event {
    pub event_id: String,
    pub org_id: String,
    pub workspace_id: String,
    pub event_type: String,
    /// RFC 3339, as the producer sent it.
    pub occurred_at: String,
    /// The stream the event is delivered for: the last token of the subject it came on
    /// (`audit.deliver.<type>.<key>`, `audit.backlog.<type>.<key>`; a DLQ replay comes back on
    /// the deliver subject). Object keys carry it, so two streams writing to one bucket never
    /// write the same object. Empty for events built without a message.
    pub stream_key: String,
    /// The rendered message: the JSON the destination receives for this event.
    pub body: Bytes,
    /// The NATS headers it arrived with (copied to the backlog and DLQ as they are).
    pub headers: HeaderMap,
    /// Acks it at the end; `None` for events built in tests or probes.
    pub(crate) message: Option<Arc<Carrier>>,
}

/// The JetStream message one or more events came in.
pub(crate) struct Carrier {
    message: jetstream::Message,
    /// Events of the message not yet settled.
    unsettled: AtomicUsize,
    /// Set once the message is acked or given back: nothing more is said about it, so a
    /// late ack can never settle a redelivery that another replica is working on.
    done: Mutex<bool>,
    /// The live messages this replica holds, and this one's stream sequence there, for a
    /// message of the live consumer (see [`Held`]).
    held: Option<(Arc<Held>, u64)>,
}

/// The live consumer's messages this replica holds unsettled (in open batches, queued in a
/// lane's window, being delivered or moved), by stream sequence (M10).
///
/// - They get in-progress acks every third of `ack_wait` ([`Held::keep_alive`]), wherever
///   they wait: a stream's `batching.max_age` may be longer than `ack_wait`, and a lane's
///   window may wait behind a slow delivery, without JetStream redelivering them meanwhile.
/// - A redelivery of a message still held (an in-progress ack lost, or late) is dropped
///   ([`Event::from_live_message`]): the held copy is delivered and acked, and JetStream
///   settles a message by its stream sequence, whichever delivery the ack came from.
#[derive(Default)]
pub(crate) struct Held {
    carriers: Mutex<HashMap<u64, Weak<Carrier>>>,
}

impl Held {
    /// How many messages are held now.
    pub(crate) fn len(&self) -> usize {
        self.carriers.lock().expect("held lock").len()
    }

    /// Sends an in-progress ack for every held message.
    pub(crate) async fn keep_alive(&self) {
        let carriers: Vec<Arc<Carrier>> = self
            .carriers
            .lock()
            .expect("held lock")
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for c in carriers {
            c.progress().await;
        }
    }

    /// Forgets `carrier` (settled or dropped), unless a later carrier took its sequence.
    fn forget(&self, sequence: u64, carrier: *const Carrier) {
        let mut carriers = self.carriers.lock().expect("held lock");
        if carriers
            .get(&sequence)
            .is_some_and(|c| std::ptr::eq(c.as_ptr(), carrier))
        {
            carriers.remove(&sequence);
        }
    }
}

impl Drop for Carrier {
    fn drop(&mut self) {
        if let Some((held, sequence)) = &self.held {
            held.forget(*sequence, self);
        }
    }
}

/// What [`Event::from_live_message`] found in a message of the live consumer.
pub(crate) enum Live {
    Events(Vec<Event>),
    /// A redelivery of a message this replica still holds: dropped, the held copy goes on.
    Held,
}

impl Carrier {
    async fn ack_one(&self) -> Result<(), async_nats::Error> {
        if self.unsettled.fetch_sub(1, Ordering::AcqRel) != 1 || self.finish() {
            return Ok(());
        }
        self.message.ack().await
    }

    async fn give_back(&self, delay: Option<std::time::Duration>) {
        if !self.finish() {
            let _ = self.message.ack_with(jetstream::AckKind::Nak(delay)).await;
        }
    }

    /// Marks the message settled; true if it already was.
    fn finish(&self) -> bool {
        let was = std::mem::replace(&mut *self.done.lock().unwrap(), true);
        if let Some((held, sequence)) = &self.held {
            held.forget(*sequence, self);
        }
        was
    }

    async fn progress(&self) {
        if !*self.done.lock().unwrap() {
            let _ = self.message.ack_with(jetstream::AckKind::Progress).await;
        }
    }
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
            stream_key: String::new(),
            body: body.into(),
            headers: HeaderMap::new(),
            message: None,
        }
    }

    /// The events a JetStream message carries (router output, backlog or replay): one, or
    /// every event of a pack. A pack this build cannot read is an error; the message is then
    /// left unacked, for JetStream to redeliver after `ack_wait` (to a sink that reads it).
    pub fn from_message(message: jetstream::Message) -> Result<Vec<Self>, pack::PackError> {
        Self::carried(message, None)
    }

    /// The events of a live consumer's message, kept alive and de-duplicated by stream
    /// sequence in `held` (see [`Held`]).
    pub(crate) fn from_live_message(
        message: jetstream::Message,
        held: &Arc<Held>,
    ) -> Result<Live, pack::PackError> {
        let Some(sequence) = message.info().ok().map(|i| i.stream_sequence) else {
            return Self::carried(message, None).map(Live::Events);
        };
        {
            let carriers = held.carriers.lock().expect("held lock");
            if carriers
                .get(&sequence)
                .is_some_and(|c| c.upgrade().is_some_and(|c| !*c.done.lock().unwrap()))
            {
                return Ok(Live::Held);
            }
        }
        Self::carried(message, Some((held.clone(), sequence))).map(Live::Events)
    }

    fn carried(
        message: jetstream::Message,
        held: Option<(Arc<Held>, u64)>,
    ) -> Result<Vec<Self>, pack::PackError> {
        let parts = if pack::is_pack(message.headers.as_ref())? {
            pack::unpack(&message.payload)?
        } else {
            vec![(
                message.headers.clone().unwrap_or_default(),
                message.payload.clone(),
            )]
        };
        let stream_key = stream_key(&message.subject).to_owned();
        let carrier = Arc::new(Carrier {
            unsettled: AtomicUsize::new(parts.len()),
            message,
            done: Mutex::new(false),
            held: held.clone(),
        });
        if let Some((held, sequence)) = held {
            held.carriers
                .lock()
                .expect("held lock")
                .insert(sequence, Arc::downgrade(&carrier));
        }
        Ok(parts
            .into_iter()
            .map(|(h, body)| {
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
                    stream_key: stream_key.clone(),
                    body,
                    headers: h,
                    message: Some(carrier.clone()),
                }
            })
            .collect())
    }
}

/// The last token of a delivery or backlog subject: the stream's key.
fn stream_key(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or_default()
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
            && let Err(e) = m.ack_one().await
        {
            tracing::debug!(error = %e, event_id = %self.event_id, "ack lost; the event will be redelivered");
        }
    }

    /// Gives the message back for redelivery after `delay` (`None`: at once).
    pub(crate) async fn nak(&self, delay: Option<std::time::Duration>) {
        if let Some(m) = &self.message {
            m.give_back(delay).await;
        }
    }

    /// Tells JetStream the work is still going, so it is not redelivered meanwhile.
    pub(crate) async fn progress(&self) {
        if let Some(m) = &self.message {
            m.progress().await;
        }
    }

    /// A span for delivering this event, in its trace (the `traceparent` it arrived with).
    pub(crate) fn span(&self) -> tracing::Span {
        let hop = auditstream_telemetry::traces::hop(
            "sink.deliver",
            self.headers.get(headers::TRACEPARENT).map(|v| v.as_str()),
        );
        hop.span.record("event_id", self.event_id.as_str());
        hop.span
    }

    /// When JetStream stored the message (the backlog's age), if known.
    pub(crate) fn stored_at(&self) -> Option<time::OffsetDateTime> {
        self.message
            .as_ref()
            .and_then(|m| m.message.info().ok())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_key_is_the_subjects_last_token() {
        assert_eq!(stream_key("audit.deliver.s3.s-1"), "s-1");
        assert_eq!(stream_key("audit.backlog.azure_blob.7f3a"), "7f3a");
        assert_eq!(stream_key("plain"), "plain");
    }
}
