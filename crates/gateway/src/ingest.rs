//! The transport-independent core: validated events in, durable events out.
//!
//! HTTP and gRPC both decode their framing into per-item validation results and hand them
//! here. Valid items are published concurrently; the call returns once every one has its
//! PubAck or has failed, so a success answer always means "on disk". Events whose ids the
//! gateway assigned travel packed per organization ([`messages`]), one PubAck for many.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream;
use auditstream_bus::{
    PublishError,
    headers::{self, EventMeta},
    pack::{self, PackConfig, Packer},
    publish_durable, subjects,
};
use auditstream_model::{ItemError, ItemErrorCode, ValidatedEvent};
use bytes::Bytes;
use futures_util::future::join_all;
use serde::Serialize;

use crate::{
    auth::OrgScope,
    metrics::{Metrics, ReasonLabel, TransportLabel},
    ratelimit::RateLimiter,
};

/// The outcome of one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ItemOutcome {
    Accepted {
        id: String,
    },
    /// Stored earlier under the same id; nothing new was written.
    Duplicate {
        id: String,
    },
    Rejected {
        error: ItemError,
    },
    /// Valid, but JetStream could not store it; the request as a whole gets 503.
    NotStored {
        id: String,
        reason: String,
    },
    /// Valid, but its organization is over its rate limit; not stored, the request as a
    /// whole gets 429 (unless a 503 applies).
    RateLimited {
        id: String,
        reason: String,
    },
}

/// Everything the transports report back.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    pub items: Vec<ItemOutcome>,
    /// Set when at least one valid item could not be stored.
    pub unavailable: Option<PublishError>,
    /// Set when at least one valid item was refused by its organization's rate limit: when
    /// to try again.
    pub rate_limited: Option<Duration>,
}

impl IngestOutcome {
    pub fn stored(&self) -> usize {
        self.items
            .iter()
            .filter(|i| {
                matches!(
                    i,
                    ItemOutcome::Accepted { .. } | ItemOutcome::Duplicate { .. }
                )
            })
            .count()
    }
    pub fn duplicates(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, ItemOutcome::Duplicate { .. }))
            .count()
    }
}

pub struct Ingestor {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) publish_timeout: Duration,
    pub(crate) limiter: RateLimiter,
    pub(crate) pack: PackConfig,
}

/// What happens to one item, decided before anything is published.
enum Plan {
    Reject(ItemError),
    Limit(String, Duration),
    Publish(ValidatedEvent),
}

impl Ingestor {
    /// Stores every valid item its token may send and its organization's rate limit lets
    /// through, and reports per item.
    pub async fn ingest(
        &self,
        items: Vec<Result<ValidatedEvent, ItemError>>,
        scope: &OrgScope,
        transport: &'static str,
        traceparent: Option<&str>,
    ) -> IngestOutcome {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let received_at = now_rfc3339();
        // The request's span continues the producer's trace; its traceparent goes on with
        // every event (lives until the events are stored).
        let hop = auditstream_telemetry::traces::hop("gateway.ingest", traceparent);
        let traceparent = hop.traceparent.as_deref();
        let plans = self.plan(items, scope);
        let rate_limited = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Limit(_, after) => Some(*after),
                _ => None,
            })
            .max();
        // Settled at once: rejected, rate-limited, or valid while NATS is away (fail fast:
        // while disconnected the client would only buffer the message).
        let mut done: Vec<(usize, ItemOutcome, Option<PublishError>)> = Vec::new();
        let mut to_publish = Vec::new();
        for (index, plan) in plans.into_iter().enumerate() {
            match plan {
                Plan::Reject(error) => done.push((index, ItemOutcome::Rejected { error }, None)),
                Plan::Limit(id, after) => {
                    let reason = format!(
                        "the organization is over its ingest rate limit; retry in {} s",
                        after.as_secs()
                    );
                    done.push((index, ItemOutcome::RateLimited { id, reason }, None));
                }
                Plan::Publish(event) if !connected => {
                    let e = PublishError::Unavailable("not connected to NATS".into());
                    let outcome = ItemOutcome::NotStored {
                        id: event.id,
                        reason: e.to_string(),
                    };
                    done.push((index, outcome, Some(e)));
                }
                Plan::Publish(event) => to_publish.push((index, event)),
            }
        }
        let sends = messages(to_publish, &self.pack);
        let published = join_all(
            sends
                .into_iter()
                .map(|send| self.publish(send, &received_at, traceparent)),
        )
        .await;
        done.extend(published.into_iter().flatten());
        done.sort_unstable_by_key(|(index, _, _)| *index);
        let (items, errors): (Vec<ItemOutcome>, Vec<Option<PublishError>>) =
            done.into_iter().map(|(_, o, e)| (o, e)).unzip();
        let not_stored = errors.iter().flatten().count();
        let unavailable = errors.into_iter().flatten().next();

        for item in &items {
            let transport_label = TransportLabel { transport };
            match item {
                ItemOutcome::Accepted { .. } => {
                    self.metrics.accepted.get_or_create(&transport_label).inc();
                }
                ItemOutcome::Duplicate { .. } => {
                    self.metrics.accepted.get_or_create(&transport_label).inc();
                    self.metrics
                        .duplicates
                        .get_or_create(&transport_label)
                        .inc();
                }
                ItemOutcome::Rejected { error } => {
                    let reason = error.code.as_str();
                    self.metrics
                        .rejected
                        .get_or_create(&ReasonLabel { transport, reason })
                        .inc();
                }
                ItemOutcome::RateLimited { .. } => {
                    self.metrics
                        .rejected
                        .get_or_create(&ReasonLabel {
                            transport,
                            reason: "rate_limited",
                        })
                        .inc();
                }
                ItemOutcome::NotStored { .. } => {}
            }
        }
        if let Some(e) = &unavailable {
            self.metrics
                .rejected
                .get_or_create(&ReasonLabel {
                    transport,
                    reason: e.reason(),
                })
                .inc_by(not_stored as u64);
            tracing::warn!(transport, not_stored, error = %e, "events not stored; answering unavailable");
        }
        if let Some(after) = rate_limited {
            tracing::info!(
                transport,
                retry_after_s = after.as_secs(),
                "events refused by an organization's rate limit"
            );
        }
        IngestOutcome {
            items,
            unavailable,
            rate_limited,
        }
    }

    /// Applies the token's organization scope, then each organization's rate limit, whose
    /// grant goes to the request's first events of that organization.
    fn plan(&self, items: Vec<Result<ValidatedEvent, ItemError>>, scope: &OrgScope) -> Vec<Plan> {
        let mut wanted: HashMap<&str, usize> = HashMap::new();
        for event in items.iter().flatten() {
            if scope.allows(&event.org_id) {
                *wanted.entry(event.org_id.as_str()).or_default() += 1;
            }
        }
        let now = Instant::now();
        let mut grants: HashMap<String, (usize, Duration)> = wanted
            .into_iter()
            .map(|(org, n)| {
                let g = self.limiter.take(org, n, now);
                (org.to_owned(), (g.granted, g.retry_after))
            })
            .collect();
        items
            .into_iter()
            .map(|item| match item {
                Err(error) => Plan::Reject(error),
                Ok(event) if !scope.allows(&event.org_id) => Plan::Reject(ItemError::new(
                    "org_id",
                    ItemErrorCode::OrgNotAllowed,
                    format!(
                        "this token may not send events for organization {:?}",
                        event.org_id
                    ),
                )),
                Ok(event) => match grants.get_mut(&event.org_id) {
                    Some((left, _)) if *left > 0 => {
                        *left -= 1;
                        Plan::Publish(event)
                    }
                    Some((_, after)) => Plan::Limit(event.id, *after),
                    None => Plan::Publish(event),
                },
            })
            .collect()
    }

    /// Publishes one message (a lone event or a pack) and reports for each event in it.
    async fn publish(
        &self,
        send: Send,
        received_at: &str,
        traceparent: Option<&str>,
    ) -> Vec<(usize, ItemOutcome, Option<PublishError>)> {
        let meta = |event: &ValidatedEvent| {
            EventMeta {
                event_id: &event.id,
                org_id: &event.org_id,
                workspace_id: &event.workspace_id,
                event_type: event.event_type.as_str(),
                occurred_at: &event.occurred_at,
                received_at,
                traceparent,
            }
            .to_headers()
        };
        let (subject, msg_id, headers, payload, events) = match send {
            Send::One(index, mut event) => {
                let subject =
                    subjects::ingest(&event.org_id, &event.workspace_id, event.event_type);
                let headers = meta(&event);
                let msg_id = headers::ingest_msg_id(&event.org_id, &event.id);
                let payload = Bytes::from(std::mem::take(&mut event.body));
                (subject, msg_id, headers, payload, vec![(index, event)])
            }
            Send::Pack(events) => {
                let subject = subjects::ingest_pack(&events[0].1.org_id);
                let mut packer = Packer::new();
                for (_, event) in &events {
                    let mut h = meta(event);
                    // Inside the pack every event keeps its own de-duplication key.
                    h.insert(
                        headers::MSG_ID,
                        headers::ingest_msg_id(&event.org_id, &event.id),
                    );
                    packer.push(&h, &event.body);
                }
                let (msg_id, payload) = packer.finish();
                let mut h = async_nats::HeaderMap::new();
                h.insert(pack::PACK, pack::VERSION);
                h.insert(headers::ORG_ID, events[0].1.org_id.as_str());
                (subject, msg_id, h, payload, events)
            }
        };
        let subject = match subject {
            Ok(s) => s,
            // Unreachable after validation, but never publish to a subject we did not check.
            Err(e) => {
                return events
                    .into_iter()
                    .map(|(index, _)| {
                        let error = ItemError {
                            field: String::new(),
                            code: ItemErrorCode::InvalidId,
                            message: e.to_string(),
                        };
                        (index, ItemOutcome::Rejected { error }, None)
                    })
                    .collect();
            }
        };
        let started = Instant::now();
        let result = publish_durable(
            &self.js,
            subject,
            &msg_id,
            headers,
            payload,
            self.publish_timeout,
        )
        .await;
        self.metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        events
            .into_iter()
            .map(|(index, event)| match &result {
                Ok(ack) if ack.duplicate => (index, ItemOutcome::Duplicate { id: event.id }, None),
                Ok(_) => (index, ItemOutcome::Accepted { id: event.id }, None),
                Err(e) => (
                    index,
                    ItemOutcome::NotStored {
                        id: event.id,
                        reason: e.to_string(),
                    },
                    Some(e.clone()),
                ),
            })
            .collect()
    }
}

/// An event with its position in the request.
type Numbered = (usize, ValidatedEvent);

/// One NATS message to publish: a lone event, or a pack of one organization's events.
enum Send {
    One(usize, ValidatedEvent),
    Pack(Vec<Numbered>),
}

/// Groups the events to publish into messages. Events whose ids the gateway assigned are
/// packed per organization, in request order, up to the pack limits: nobody can send such
/// an id again, so nothing depends on JetStream de-duplicating them one by one. An event
/// with the producer's own id goes alone under `Nats-Msg-Id = id`, which is the producer's
/// idempotency promise (the same id within the window is stored once, whatever request it
/// comes in).
fn messages(events: Vec<Numbered>, pack: &PackConfig) -> Vec<Send> {
    let mut sends = Vec::new();
    // Per organization in first-seen order: the open pack and its bytes.
    let mut open: Vec<(String, Vec<Numbered>, usize)> = Vec::new();
    for (index, event) in events {
        let size = event.body.len() + pack::ENTRY_OVERHEAD;
        if !event.id_assigned || pack.max_events <= 1 || size > pack.max_bytes {
            sends.push(Send::One(index, event));
            continue;
        }
        let at = match open.iter().position(|(org, _, _)| *org == event.org_id) {
            Some(at) => at,
            None => {
                open.push((event.org_id.clone(), Vec::new(), 0));
                open.len() - 1
            }
        };
        let (_, list, bytes) = &mut open[at];
        if list.len() >= pack.max_events || *bytes + size > pack.max_bytes {
            sends.push(close(std::mem::take(list)));
            *bytes = 0;
        }
        *bytes += size;
        list.push((index, event));
    }
    sends.extend(
        open.into_iter()
            .filter(|(_, list, _)| !list.is_empty())
            .map(|(_, list, _)| close(list)),
    );
    sends
}

/// A lone event is published as itself, on its own subject.
fn close(mut list: Vec<Numbered>) -> Send {
    if list.len() == 1 {
        let (index, event) = list.pop().expect("one event");
        Send::One(index, event)
    } else {
        Send::Pack(list)
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("current time formats as RFC 3339")
}
