//! The transport-independent core: validated events in, durable events out.
//!
//! HTTP and gRPC both decode their framing into per-item validation results and hand them
//! here. Valid items are published concurrently; the call returns once every one has its
//! PubAck or has failed, so a success answer always means "on disk". Events whose ids the
//! gateway assigned travel packed per organization ([`messages`]), one PubAck for many;
//! a pack is sized by its real bytes ([`pack::entry_bytes`]).
//!
//! An event that NATS refuses as larger than the server's `max_payload` is answered on its
//! own (`event_too_large`, not stored) instead of failing the request as "retry later": it
//! would be refused again however often the producer retried (security review L4).

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
    auth::Caller,
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
    /// Valid, but its organization (or its token) is over its rate limit; not stored, the
    /// request as a whole gets 429 (unless a 503 applies).
    RateLimited {
        id: String,
        reason: String,
        /// The token's limit refused it, not the organization's (for the metrics).
        #[serde(skip)]
        by_token: bool,
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
    /// Rate limited: its id, when to retry, and whether the token's limit refused it.
    Limit(String, Duration, bool),
    Publish(ValidatedEvent),
}

impl Ingestor {
    /// Stores every valid item its token may send and its organization's rate limit lets
    /// through, and reports per item.
    pub async fn ingest(
        &self,
        items: Vec<Result<ValidatedEvent, ItemError>>,
        caller: &Caller,
        transport: &'static str,
        traceparent: Option<&str>,
    ) -> IngestOutcome {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let received_at = now_rfc3339();
        // The request's span continues the producer's trace; its traceparent goes on with
        // every event (lives until the events are stored).
        let hop = auditstream_telemetry::traces::hop("gateway.ingest", traceparent);
        let traceparent = hop.traceparent.as_deref();
        let plans = self.plan(items, caller);
        let rate_limited = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Limit(_, after, _) => Some(*after),
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
                Plan::Limit(id, after, by_token) => {
                    let whose = if by_token {
                        "this token"
                    } else {
                        "the organization"
                    };
                    let reason = format!(
                        "{whose} is over its ingest rate limit; retry in {} s",
                        after.as_secs()
                    );
                    let outcome = ItemOutcome::RateLimited {
                        id,
                        reason,
                        by_token,
                    };
                    done.push((index, outcome, None));
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
        let meta = |event: &ValidatedEvent| event_headers(event, &received_at, traceparent);
        let sends = messages(to_publish, &self.pack, meta);
        let published = join_all(sends.into_iter().map(|send| self.publish(send))).await;
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
                ItemOutcome::RateLimited { by_token, .. } => {
                    let reason = if *by_token {
                        "token_rate_limited"
                    } else {
                        "rate_limited"
                    };
                    self.metrics
                        .rejected
                        .get_or_create(&ReasonLabel { transport, reason })
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
                "events refused by a rate limit"
            );
        }
        IngestOutcome {
            items,
            unavailable,
            rate_limited,
        }
    }

    /// Applies the token's organization scope, then the token's rate limit, then each
    /// organization's; the grants go to the request's first events.
    fn plan(&self, items: Vec<Result<ValidatedEvent, ItemError>>, caller: &Caller) -> Vec<Plan> {
        let scope = &caller.scope;
        let now = Instant::now();
        let allowed = items
            .iter()
            .flatten()
            .filter(|e| scope.allows(&e.org_id))
            .count();
        let token = self.limiter.take_token(caller.token, allowed, now);
        // The organizations' buckets are asked only for what the token's limit let through,
        // so events the token may not send cost no organization anything.
        let mut token_left = token.granted;
        let mut wanted: HashMap<&str, usize> = HashMap::new();
        for event in items.iter().flatten() {
            if scope.allows(&event.org_id) && token_left > 0 {
                token_left -= 1;
                *wanted.entry(event.org_id.as_str()).or_default() += 1;
            }
        }
        let mut grants: HashMap<String, (usize, Duration)> = wanted
            .into_iter()
            .map(|(org, n)| {
                let g = self.limiter.take(org, n, now);
                (org.to_owned(), (g.granted, g.retry_after))
            })
            .collect();
        let mut token_left = token.granted;
        let mut org_refused = 0;
        let plans = items
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
                Ok(event) if token_left == 0 => Plan::Limit(event.id, token.retry_after, true),
                Ok(event) => {
                    token_left -= 1;
                    match grants.get_mut(&event.org_id) {
                        Some((left, _)) if *left > 0 => {
                            *left -= 1;
                            Plan::Publish(event)
                        }
                        Some((_, after)) => {
                            org_refused += 1;
                            Plan::Limit(event.id, *after, false)
                        }
                        None => Plan::Publish(event),
                    }
                }
            })
            .collect();
        // Events an organization refused were not sent: the token keeps their share.
        self.limiter.refund_token(caller.token, org_refused);
        plans
    }

    /// Publishes one message (a lone event or a pack) and reports for each event in it.
    async fn publish(&self, send: Send) -> Vec<(usize, ItemOutcome, Option<PublishError>)> {
        match send {
            Send::One(index, event, headers) => vec![self.publish_one(index, event, headers).await],
            Send::Pack(events) => {
                let subject = subjects::ingest_pack(&events[0].1.org_id);
                let mut packer = Packer::new();
                for (_, event, h) in &events {
                    packer.push(h, &event.body);
                }
                let (msg_id, payload) = packer.finish();
                let mut h = async_nats::HeaderMap::new();
                h.insert(pack::PACK, pack::VERSION);
                h.insert(headers::ORG_ID, events[0].1.org_id.as_str());
                let result = match subject {
                    Ok(subject) => self.send(subject, &msg_id, h, payload).await,
                    // Unreachable after validation, but never publish to a subject we did
                    // not check.
                    Err(e) => {
                        return events
                            .into_iter()
                            .map(|(index, _, _)| (index, unpublishable(e.to_string()), None))
                            .collect();
                    }
                };
                match result {
                    // Over `max_payload` (a `pack.max_bytes` above the server's limit): each
                    // event goes alone instead, under the same per-event de-duplication key.
                    Err(PublishError::Refused(_)) => {
                        join_all(
                            events
                                .into_iter()
                                .map(|(index, event, h)| self.publish_one(index, event, h)),
                        )
                        .await
                    }
                    result => events
                        .into_iter()
                        .map(|(index, event, _)| settle(index, event.id, &result))
                        .collect(),
                }
            }
        }
    }

    /// Publishes one event as a message of its own, on its own subject.
    async fn publish_one(
        &self,
        index: usize,
        mut event: ValidatedEvent,
        h: async_nats::HeaderMap,
    ) -> (usize, ItemOutcome, Option<PublishError>) {
        let subject = match subjects::ingest(&event.org_id, &event.workspace_id, event.event_type) {
            Ok(s) => s,
            Err(e) => return (index, unpublishable(e.to_string()), None),
        };
        let msg_id = headers::ingest_msg_id(&event.org_id, &event.id);
        let payload = Bytes::from(std::mem::take(&mut event.body));
        let result = self.send(subject, &msg_id, h, payload).await;
        settle(index, event.id, &result)
    }

    async fn send(
        &self,
        subject: String,
        msg_id: &str,
        h: async_nats::HeaderMap,
        payload: Bytes,
    ) -> Result<auditstream_bus::Ack, PublishError> {
        let started = Instant::now();
        let result =
            publish_durable(&self.js, subject, msg_id, h, payload, self.publish_timeout).await;
        self.metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

/// An event's NATS headers, with its own de-duplication key (inside a pack that is what
/// names it; alone, `publish_durable` sets the same value).
fn event_headers(
    event: &ValidatedEvent,
    received_at: &str,
    traceparent: Option<&str>,
) -> async_nats::HeaderMap {
    let mut h = EventMeta {
        event_id: &event.id,
        org_id: &event.org_id,
        workspace_id: &event.workspace_id,
        event_type: event.event_type.as_str(),
        occurred_at: &event.occurred_at,
        received_at,
        traceparent,
    }
    .to_headers();
    h.insert(
        headers::MSG_ID,
        headers::ingest_msg_id(&event.org_id, &event.id),
    );
    h
}

/// The outcome of one event from its message's publish.
fn settle(
    index: usize,
    id: String,
    result: &Result<auditstream_bus::Ack, PublishError>,
) -> (usize, ItemOutcome, Option<PublishError>) {
    match result {
        Ok(ack) if ack.duplicate => (index, ItemOutcome::Duplicate { id }, None),
        Ok(_) => (index, ItemOutcome::Accepted { id }, None),
        // Refused for its size: answered for this event alone, never "retry later".
        Err(PublishError::Refused(e)) => {
            let error = ItemError::new(
                "",
                ItemErrorCode::EventTooLarge,
                format!(
                    "the event with its headers is larger than the NATS server accepts in one message ({e}); lower limits.max_event_bytes below the server's max_payload, or send a smaller event"
                ),
            );
            (index, ItemOutcome::Rejected { error }, None)
        }
        Err(e) => (
            index,
            ItemOutcome::NotStored {
                id,
                reason: e.to_string(),
            },
            Some(e.clone()),
        ),
    }
}

fn unpublishable(message: String) -> ItemOutcome {
    ItemOutcome::Rejected {
        error: ItemError {
            field: String::new(),
            code: ItemErrorCode::InvalidId,
            message,
        },
    }
}

/// An event with its position in the request and its NATS headers.
type Numbered = (usize, ValidatedEvent, async_nats::HeaderMap);

/// One NATS message to publish: a lone event, or a pack of one organization's events.
enum Send {
    One(usize, ValidatedEvent, async_nats::HeaderMap),
    Pack(Vec<Numbered>),
}

/// Groups the events to publish into messages. Events whose ids the gateway assigned are
/// packed per organization, in request order, up to the pack limits: nobody can send such
/// an id again, so nothing depends on JetStream de-duplicating them one by one. An event
/// with the producer's own id goes alone under `Nats-Msg-Id = id`, which is the producer's
/// idempotency promise (the same id within the window is stored once, whatever request it
/// comes in). A pack's size is the real size of its entries, headers included.
fn messages(
    events: Vec<(usize, ValidatedEvent)>,
    pack: &PackConfig,
    headers_of: impl Fn(&ValidatedEvent) -> async_nats::HeaderMap,
) -> Vec<Send> {
    let mut sends = Vec::new();
    // Per organization in first-seen order: the open pack and its bytes.
    let mut open: Vec<(String, Vec<Numbered>, usize)> = Vec::new();
    for (index, event) in events {
        let h = headers_of(&event);
        let size = pack::entry_bytes(&h, event.body.len());
        if !event.id_assigned || pack.max_events <= 1 || size > pack.max_bytes {
            sends.push(Send::One(index, event, h));
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
        list.push((index, event, h));
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
        let (index, event, h) = list.pop().expect("one event");
        Send::One(index, event, h)
    } else {
        Send::Pack(list)
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("current time formats as RFC 3339")
}
