//! `POST /v1/events`: JSON object, JSON array or NDJSON, optionally gzip-compressed.
//!
//! Status codes: 200 every event stored; 207 some stored, some rejected (the body says which);
//! 400 none stored because every event was invalid, or the request could not be read;
//! 401 missing or wrong token; 403 every event was for an organization the token may not
//! send for; 408 the body did not arrive within `server.request_timeout`; 413 over a size
//! or count limit; 415 unsupported content type or encoding; 429 with `Retry-After` when an
//! organization is over its rate limit; 503 with `Retry-After` when JetStream could not
//! store a valid event, or (code `overloaded`) when the gateway holds
//! `server.max_inflight_body_bytes` of request bodies already ([`crate::budget`]). A 2xx
//! therefore always means every event listed as accepted is durable, and with 429 / 503 the
//! events listed as accepted are durable too. A request whose every event is too large
//! (`event_too_large`, including one NATS refused for the server's `max_payload`) gets 413.

use std::{io::Read as _, sync::Arc, time::Duration};

use auditstream_model::{
    ItemErrorCode,
    body::{BodyError, BodyErrorKind, Framing, decode, too_large},
};
use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use futures_util::StreamExt;
use serde::Serialize;

use crate::{
    Core,
    budget::{Exhausted, Hold},
    ingest::ItemOutcome,
    traceparent::Incoming,
};

const TRANSPORT: &str = "http";

pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .with_state(core)
}

/// A problem with the request as a whole.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RequestError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl From<BodyError> for RequestError {
    fn from(e: BodyError) -> Self {
        let status = match e.kind {
            BodyErrorKind::Malformed => StatusCode::BAD_REQUEST,
            BodyErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        };
        RequestError::new(status, e.code, e.message)
    }
}

impl RequestError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        RequestError {
            status,
            code,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct IngestBody<'a> {
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    #[serde(skip_serializing_if = "is_zero")]
    rate_limited: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDetail<'a>>,
    results: Vec<IndexedOutcome<'a>>,
}

#[derive(Serialize)]
struct IndexedOutcome<'a> {
    index: usize,
    #[serde(flatten)]
    outcome: &'a ItemOutcome,
}

async fn post_events(State(core): State<Arc<Core>>, headers: HeaderMap, body: Body) -> Response {
    match handle(&core, &headers, body).await {
        Ok(response) => response,
        Err(e) => {
            core.metrics.request_rejected(TRANSPORT, e.code);
            let mut response = (
                e.status,
                Json(ErrorBody {
                    error: ErrorDetail {
                        code: e.code,
                        message: &e.message,
                    },
                }),
            )
                .into_response();
            if e.status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            if e.status == StatusCode::SERVICE_UNAVAILABLE {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, core.retry_after_header());
            }
            response
        }
    }
}

async fn handle(core: &Core, headers: &HeaderMap, body: Body) -> Result<Response, RequestError> {
    let caller = core
        .auth
        .identify(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
        .map_err(|e| RequestError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.message()))?;
    let framing = framing(headers)?;
    let gzip = content_encoding_is_gzip(headers)?;
    // Every body byte held counts against the global budget until this request ends.
    let mut raw_hold = core.budget.hold();
    let raw = read_limited(
        body,
        core.limits.max_request_bytes,
        core.request_timeout,
        &mut raw_hold,
    )
    .await?;
    let limits = core.limits.clone();
    let budget = core.budget.clone();
    // Decompressing and validating up to 10 MiB is CPU work: keep it off the async workers.
    let (items, _held) = tokio::task::spawn_blocking(move || {
        let (body, hold) = if gzip {
            let mut hold = budget.hold();
            let body = gunzip(&raw, limits.max_request_bytes, &mut hold)?;
            // The compressed bytes are no longer held.
            drop((raw, raw_hold));
            (body, hold)
        } else {
            (raw, raw_hold)
        };
        decode(body, false, framing, &limits)
            .map(|items| (items, hold))
            .map_err(RequestError::from)
    })
    .await
    .map_err(|e| {
        RequestError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    })??;
    let traceparent = Incoming::of(headers.get("traceparent").map(|v| v.as_bytes()));
    if traceparent == Incoming::Dropped {
        core.metrics.traceparent_dropped.inc();
    }
    let outcome = core
        .ingestor
        .ingest(items, &caller, TRANSPORT, traceparent.valid())
        .await;

    let stored = outcome.stored();
    let rejected = outcome
        .items
        .iter()
        .filter(|i| matches!(i, ItemOutcome::Rejected { .. }))
        .count();
    let unavailable_message = outcome.unavailable.as_ref().map(|e| {
        format!("{e}; events listed as not_stored were not stored, retry them after the Retry-After delay")
    });
    let error = match (&unavailable_message, outcome.rate_limited) {
        (Some(message), _) => Some(ErrorDetail {
            code: "unavailable",
            message,
        }),
        (None, Some(_)) => Some(ErrorDetail {
            code: "rate_limited",
            message: "an organization of this request (or its token) is over its ingest rate limit; events listed as rate_limited were not stored, retry them after the Retry-After delay",
        }),
        (None, None) => None,
    };
    let rate_limited = outcome
        .items
        .iter()
        .filter(|i| matches!(i, ItemOutcome::RateLimited { .. }))
        .count();
    let all_rejected_as = |code: ItemErrorCode| {
        rejected > 0
            && outcome
                .items
                .iter()
                .all(|i| matches!(i, ItemOutcome::Rejected { error } if error.code == code))
    };
    let only_other_orgs = all_rejected_as(ItemErrorCode::OrgNotAllowed);
    let only_too_large = all_rejected_as(ItemErrorCode::EventTooLarge);
    let status = if outcome.unavailable.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if outcome.rate_limited.is_some() {
        StatusCode::TOO_MANY_REQUESTS
    } else if only_other_orgs {
        StatusCode::FORBIDDEN
    } else if only_too_large {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if rejected == 0 {
        StatusCode::OK
    } else if stored > 0 {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = IngestBody {
        accepted: stored,
        duplicates: outcome.duplicates(),
        rejected,
        rate_limited,
        error,
        results: outcome
            .items
            .iter()
            .enumerate()
            .map(|(index, outcome)| IndexedOutcome { index, outcome })
            .collect(),
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, core.retry_after_header());
    } else if let Some(after) = outcome.rate_limited {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, after.as_secs().max(1).into());
    }
    Ok(response)
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn framing(headers: &HeaderMap) -> Result<Framing, RequestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Framing::Json);
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Framing::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Framing::Ndjson),
        other => Err(RequestError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            format!(
                "content type {other:?} is not supported; send application/json or application/x-ndjson"
            ),
        )),
    }
}

fn content_encoding_is_gzip(headers: &HeaderMap) -> Result<bool, RequestError> {
    match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or_default().trim().to_ascii_lowercase())
    {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if e == "gzip" || e == "x-gzip" => Ok(true),
        Some(other) => Err(RequestError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            format!("content encoding {other:?} is not supported; send gzip or none"),
        )),
    }
}

impl From<Exhausted> for RequestError {
    fn from(e: Exhausted) -> Self {
        RequestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "the gateway holds {} bytes of request bodies already (server.max_inflight_body_bytes); retry after the Retry-After delay",
                e.total
            ),
        )
    }
}

/// Reads the body, stopping as soon as it passes `limit` instead of buffering it whole, or
/// when it has not arrived within `timeout` (a client trickling its body holds a connection
/// and a request slot, never more than this long). Every chunk is taken from `hold` first.
async fn read_limited(
    body: Body,
    limit: usize,
    timeout: Duration,
    hold: &mut Hold,
) -> Result<Vec<u8>, RequestError> {
    tokio::time::timeout(timeout, read_body(body, limit, hold))
        .await
        .unwrap_or_else(|_| {
            Err(RequestError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s (server.request_timeout)",
                    timeout.as_secs_f64()
                ),
            ))
        })
}

async fn read_body(body: Body, limit: usize, hold: &mut Hold) -> Result<Vec<u8>, RequestError> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RequestError::new(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                format!("cannot read the request body: {e}"),
            )
        })?;
        if out.len() + chunk.len() > limit {
            return Err(too_large(limit, "is larger than").into());
        }
        hold.take(chunk.len())?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Inflates a gzip body (members one after another, as `decode` would), bounded by `limit`
/// like the raw body, taking every inflated chunk from `hold` as it comes: a small body that
/// inflates to 10 MiB counts as 10 MiB.
fn gunzip(raw: &[u8], limit: usize, hold: &mut Hold) -> Result<Vec<u8>, RequestError> {
    let mut decoder = flate2::read::MultiGzDecoder::new(raw);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(RequestError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_gzip",
                    format!("the body is not valid gzip: {e}"),
                ));
            }
        };
        if out.len() + n > limit {
            return Err(too_large(limit, "decompressed").into());
        }
        hold.take(n)?;
        out.extend_from_slice(&buf[..n]);
    }
}
