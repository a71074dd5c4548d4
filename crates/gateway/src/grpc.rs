//! gRPC `IngestService`: the same validation and durability as HTTP, typed fields instead of
//! JSON framing. Per-item problems come back in the response (the call itself succeeds);
//! UNAUTHENTICATED, RESOURCE_EXHAUSTED (too many events, or an organization over its rate
//! limit, then with `retry-after` metadata) and UNAVAILABLE (with `retry-after` metadata)
//! concern the whole call.
//!
//! An `IngestStream` call is bounded on its own (security review M17): at most
//! `server.max_stream_events` events, at most `server.stream_idle_timeout` between two
//! messages and `server.max_stream_duration` in all, instead of the unary
//! `server.request_timeout`, which used to kill long streams and lose every result. A call
//! cut short by one of these ends *gracefully*: the response (status OK) carries the results
//! of every event read so far, and the `auditstream-ingest-incomplete` response metadata
//! says which limit ended it and from which index on nothing was read. An error status
//! could not carry the results: it drops the response message, and trailer metadata is
//! limited to 8–16 KiB by gRPC clients (beyond, they drop the whole connection), while a
//! call's results can run to megabytes.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use auditstream_model::{ItemError, ValidatedEvent, envelope::Parts, validate_parts};
use auditstream_proto::v1::{
    IngestEvent, IngestRequest, IngestResponse, ItemResult, ItemStatus,
    ingest_service_server::IngestService,
};
use tonic::{Request, Response, Status, Streaming};

use crate::{Core, auth::Caller, ingest::ItemOutcome, traceparent::Incoming};

const TRANSPORT: &str = "grpc";

/// Response metadata of an `IngestStream` call that a limit ended before the client did.
pub const INCOMPLETE: &str = "auditstream-ingest-incomplete";

pub struct GrpcIngest {
    pub(crate) core: Arc<Core>,
}

impl GrpcIngest {
    fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        self.core.auth.identify(header).map_err(|e| {
            self.core
                .metrics
                .request_rejected(TRANSPORT, "unauthorized");
            Status::unauthenticated(e.message())
        })
    }

    /// Validates and stores one batch; `offset` numbers its events after earlier batches.
    async fn ingest_batch(
        &self,
        caller: &Caller,
        events: Vec<IngestEvent>,
        offset: usize,
        traceparent: Option<&str>,
        response: &mut IngestResponse,
    ) -> Result<(), Status> {
        let limits = &self.core.limits;
        if events.len() > limits.max_events_per_request {
            self.core
                .metrics
                .request_rejected(TRANSPORT, "too_many_events");
            return Err(Status::resource_exhausted(format!(
                "the batch holds {} events; at most {} are allowed (limits.max_events_per_request)",
                events.len(),
                limits.max_events_per_request
            )));
        }
        let items: Vec<Result<ValidatedEvent, ItemError>> = events
            .iter()
            .map(|e| {
                let parts = Parts {
                    id: &e.id,
                    event_type: &e.event_type,
                    occurred_at: &e.occurred_at,
                    org_id: &e.org_id,
                    workspace_id: &e.workspace_id,
                    data_json: &e.data_json,
                };
                validate_parts(parts, limits)
            })
            .collect();
        let outcome = self
            .core
            .ingestor
            .ingest(items, caller, TRANSPORT, traceparent)
            .await;
        response.accepted += outcome.stored() as u32;
        response.duplicates += outcome.duplicates() as u32;
        response.results.extend(
            outcome
                .items
                .iter()
                .enumerate()
                .map(|(i, o)| to_result(offset + i, o)),
        );
        if let Some(e) = outcome.unavailable {
            let mut status = Status::unavailable(format!(
                "{e}; {} events of this call were stored before the failure, resend the rest (events with ids are de-duplicated)",
                response.accepted
            ));
            if let Ok(v) = self.core.retry_after.as_secs().max(1).to_string().parse() {
                status.metadata_mut().insert("retry-after", v);
            }
            return Err(status);
        }
        if let Some(after) = outcome.rate_limited {
            let mut status = Status::resource_exhausted(format!(
                "an organization of this call (or its token) is over its ingest rate limit; {} events of this call were stored, resend the rest after {} s (events with ids are de-duplicated)",
                response.accepted,
                after.as_secs()
            ));
            if let Ok(v) = after.as_secs().max(1).to_string().parse() {
                status.metadata_mut().insert("retry-after", v);
            }
            return Err(status);
        }
        Ok(())
    }
}

impl GrpcIngest {
    /// The producer's `traceparent` if W3C-shaped; a malformed one is dropped and counted.
    fn traceparent<T>(&self, request: &Request<T>) -> Option<String> {
        let value = request.metadata().get("traceparent").map(|v| v.as_bytes());
        let incoming = Incoming::of(value);
        if incoming == Incoming::Dropped {
            self.core.metrics.traceparent_dropped.inc();
        }
        incoming.valid().map(str::to_owned)
    }
}

/// Why a stream call ended before its client closed it.
enum Cut {
    Events,
    Idle,
    Duration,
}

fn to_result(index: usize, outcome: &ItemOutcome) -> ItemResult {
    let (id, status, error) = match outcome {
        ItemOutcome::Accepted { id } => (id.clone(), ItemStatus::Accepted, None),
        ItemOutcome::Duplicate { id } => (id.clone(), ItemStatus::Duplicate, None),
        ItemOutcome::Rejected { error } => (
            String::new(),
            ItemStatus::Rejected,
            Some(auditstream_proto::v1::ItemError {
                field: error.field.clone(),
                code: error.code.as_str().to_owned(),
                message: error.message.clone(),
            }),
        ),
        ItemOutcome::NotStored { id, reason } => (
            id.clone(),
            ItemStatus::Rejected,
            Some(auditstream_proto::v1::ItemError {
                field: String::new(),
                code: "unavailable".into(),
                message: reason.clone(),
            }),
        ),
        ItemOutcome::RateLimited { id, reason, .. } => (
            id.clone(),
            ItemStatus::Rejected,
            Some(auditstream_proto::v1::ItemError {
                field: String::new(),
                code: "rate_limited".into(),
                message: reason.clone(),
            }),
        ),
    };
    ItemResult {
        index: index as u32,
        id,
        status: status as i32,
        error,
    }
}

#[tonic::async_trait]
impl IngestService for GrpcIngest {
    async fn ingest(
        &self,
        request: Request<IngestRequest>,
    ) -> Result<Response<IngestResponse>, Status> {
        let caller = self.authenticate(&request)?;
        let tp = self.traceparent(&request);
        let mut response = IngestResponse::default();
        self.ingest_batch(
            &caller,
            request.into_inner().events,
            0,
            tp.as_deref(),
            &mut response,
        )
        .await?;
        Ok(Response::new(response))
    }

    async fn ingest_stream(
        &self,
        request: Request<Streaming<IngestRequest>>,
    ) -> Result<Response<IngestResponse>, Status> {
        let caller = self.authenticate(&request)?;
        let tp = self.traceparent(&request);
        let limits = &self.core.stream;
        let deadline = Instant::now() + limits.max_stream_duration;
        let mut stream = request.into_inner();
        let mut response = IngestResponse::default();
        let mut offset = 0;
        let cut = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Checked before waiting: `timeout` polls the message first, so a client that
            // always has one ready would otherwise never meet the deadline.
            if left.is_zero() {
                break Some(Cut::Duration);
            }
            let wait = left.min(limits.stream_idle_timeout);
            let batch = match tokio::time::timeout(wait, stream.message()).await {
                Ok(Ok(Some(batch))) => batch,
                Ok(Ok(None)) => break None,
                Ok(Err(status)) => return Err(status),
                Err(_) if wait < limits.stream_idle_timeout => break Some(Cut::Duration),
                Err(_) => break Some(Cut::Idle),
            };
            let n = batch.events.len();
            if offset + n > limits.max_stream_events {
                break Some(Cut::Events);
            }
            self.ingest_batch(&caller, batch.events, offset, tp.as_deref(), &mut response)
                .await?;
            offset += n;
        };
        let mut reply = Response::new(response);
        if let Some(cut) = cut {
            let (reason, why) = match cut {
                Cut::Events => (
                    "max_stream_events",
                    format!(
                        "the call reached server.max_stream_events ({})",
                        limits.max_stream_events
                    ),
                ),
                Cut::Idle => (
                    "stream_idle_timeout",
                    format!(
                        "no message within server.stream_idle_timeout ({} s)",
                        limits.stream_idle_timeout.as_secs_f64()
                    ),
                ),
                Cut::Duration => (
                    "max_stream_duration",
                    format!(
                        "the call lasted server.max_stream_duration ({} s)",
                        limits.max_stream_duration.as_secs_f64()
                    ),
                ),
            };
            self.core.metrics.request_rejected(TRANSPORT, reason);
            tracing::info!(reason, events = offset, "ingest stream ended by a limit");
            let text = format!(
                "{why}: the results cover events 0..{offset}; events from index {offset} on were not read, send them in a new call"
            );
            if let Ok(v) = text.parse() {
                reply.metadata_mut().insert(INCOMPLETE, v);
            }
            // What the client still sends is read and dropped (for at most request_timeout)
            // instead of resetting its HTTP/2 stream at once: a client caught mid-send would
            // otherwise see a transport error instead of this response and lose its results.
            let grace = self.core.request_timeout;
            tokio::spawn(async move {
                let drain = async { while let Ok(Some(_)) = stream.message().await {} };
                let _ = tokio::time::timeout(grace, drain).await;
            });
        }
        Ok(reply)
    }
}

/// The limits of one `IngestStream` call (from `server`).
#[derive(Debug, Clone)]
pub(crate) struct StreamLimits {
    pub(crate) max_stream_events: usize,
    pub(crate) stream_idle_timeout: Duration,
    pub(crate) max_stream_duration: Duration,
}
