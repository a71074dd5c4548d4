//! gRPC `IngestService`: the same validation and durability as HTTP, typed fields instead of
//! JSON framing. Per-item problems come back in the response (the call itself succeeds);
//! UNAUTHENTICATED, RESOURCE_EXHAUSTED (too many events, or an organization over its rate
//! limit, then with `retry-after` metadata) and UNAVAILABLE (with `retry-after` metadata)
//! concern the whole call.

use std::sync::Arc;

use auditstream_model::{ItemError, ValidatedEvent, envelope::Parts, validate_parts};
use auditstream_proto::v1::{
    IngestEvent, IngestRequest, IngestResponse, ItemResult, ItemStatus,
    ingest_service_server::IngestService,
};
use tonic::{Request, Response, Status, Streaming};

use crate::{Core, auth::OrgScope, ingest::ItemOutcome};

const TRANSPORT: &str = "grpc";

pub struct GrpcIngest {
    pub(crate) core: Arc<Core>,
}

impl GrpcIngest {
    fn authenticate<T>(&self, request: &Request<T>) -> Result<OrgScope, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        self.core.auth.check(header).map_err(|e| {
            self.core
                .metrics
                .request_rejected(TRANSPORT, "unauthorized");
            Status::unauthenticated(e.message())
        })
    }

    /// Validates and stores one batch; `offset` numbers its events after earlier batches.
    async fn ingest_batch(
        &self,
        scope: &OrgScope,
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
            .ingest(items, scope, TRANSPORT, traceparent)
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
                "an organization of this call is over its ingest rate limit; {} events of this call were stored, resend the rest after {} s (events with ids are de-duplicated)",
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

fn traceparent<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
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
        ItemOutcome::RateLimited { id, reason } => (
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
        let scope = self.authenticate(&request)?;
        let tp = traceparent(&request);
        let mut response = IngestResponse::default();
        self.ingest_batch(
            &scope,
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
        let scope = self.authenticate(&request)?;
        let tp = traceparent(&request);
        let mut stream = request.into_inner();
        let mut response = IngestResponse::default();
        let mut offset = 0;
        while let Some(batch) = stream.message().await? {
            let n = batch.events.len();
            self.ingest_batch(&scope, batch.events, offset, tp.as_deref(), &mut response)
                .await?;
            offset += n;
        }
        Ok(Response::new(response))
    }
}
