//! The transport-independent core: validated events in, durable events out.
//!
//! HTTP and gRPC both decode their framing into per-item validation results and hand them
//! here. Valid items are published concurrently; the call returns once every one has its
//! PubAck or has failed, so a success answer always means "on disk".

use std::{sync::Arc, time::Instant};

use async_nats::jetstream;
use auditstream_bus::{PublishError, headers::EventMeta, publish_durable, subjects};
use auditstream_model::{ItemError, ValidatedEvent};
use bytes::Bytes;
use futures_util::future::join_all;
use serde::Serialize;

use crate::metrics::{Metrics, ReasonLabel, TransportLabel};

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
}

/// Everything the transports report back.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    pub items: Vec<ItemOutcome>,
    /// Set when at least one valid item could not be stored.
    pub unavailable: Option<PublishError>,
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
    pub(crate) publish_timeout: std::time::Duration,
}

impl Ingestor {
    /// Stores every valid item and reports per item.
    pub async fn ingest(
        &self,
        items: Vec<Result<ValidatedEvent, ItemError>>,
        transport: &'static str,
        traceparent: Option<&str>,
    ) -> IngestOutcome {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let received_at = now_rfc3339();
        // The request's span continues the producer's trace; its traceparent goes on with
        // every event (lives until the events are stored).
        let hop = auditstream_telemetry::traces::hop("gateway.ingest", traceparent);
        let traceparent = hop.traceparent.as_deref();
        let publishes = items.into_iter().map(|item| async {
            match item {
                Err(error) => (ItemOutcome::Rejected { error }, None),
                // Fail fast: while disconnected the client would only buffer the message.
                Ok(event) if !connected => {
                    let e = PublishError::Unavailable("not connected to NATS".into());
                    (
                        ItemOutcome::NotStored {
                            id: event.id,
                            reason: e.to_string(),
                        },
                        Some(e),
                    )
                }
                Ok(event) => self.publish(event, &received_at, traceparent).await,
            }
        });
        let (items, errors): (Vec<ItemOutcome>, Vec<Option<PublishError>>) =
            join_all(publishes).await.into_iter().unzip();
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
        IngestOutcome { items, unavailable }
    }

    async fn publish(
        &self,
        event: ValidatedEvent,
        received_at: &str,
        traceparent: Option<&str>,
    ) -> (ItemOutcome, Option<PublishError>) {
        let subject = match subjects::ingest(&event.org_id, &event.workspace_id, event.event_type) {
            Ok(s) => s,
            // Unreachable after validation, but never publish to a subject we did not check.
            Err(e) => {
                let error = ItemError {
                    field: String::new(),
                    code: auditstream_model::ItemErrorCode::InvalidId,
                    message: e.to_string(),
                };
                return (ItemOutcome::Rejected { error }, None);
            }
        };
        let headers = EventMeta {
            event_id: &event.id,
            org_id: &event.org_id,
            workspace_id: &event.workspace_id,
            event_type: event.event_type.as_str(),
            occurred_at: &event.occurred_at,
            received_at,
            traceparent,
        }
        .to_headers();
        let started = Instant::now();
        let result = publish_durable(
            &self.js,
            subject,
            &event.id,
            headers,
            Bytes::from(event.body),
            self.publish_timeout,
        )
        .await;
        self.metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(ack) if ack.duplicate => (ItemOutcome::Duplicate { id: event.id }, None),
            Ok(_) => (ItemOutcome::Accepted { id: event.id }, None),
            Err(e) => (
                ItemOutcome::NotStored {
                    id: event.id,
                    reason: e.to_string(),
                },
                Some(e),
            ),
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("current time formats as RFC 3339")
}
