//! `POST /v1/events`: JSON object, JSON array or NDJSON, optionally gzip-compressed.
//!
//! Status codes: 200 every event stored; 207 some stored, some rejected (the body says which);
//! 400 none stored because every event was invalid, or the request could not be read;
//! 401 missing or wrong token; 413 over a size or count limit; 415 unsupported content type
//! or encoding; 503 with `Retry-After` when JetStream could not store a valid event.
//! A 2xx therefore always means every event listed as accepted is durable.

use std::{io::Read, sync::Arc};

use auditstream_model::{ItemError, Limits, ValidatedEvent, validate_envelope};
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
use serde_json::value::RawValue;

use crate::{Core, ingest::ItemOutcome};

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
            response
        }
    }
}

async fn handle(core: &Core, headers: &HeaderMap, body: Body) -> Result<Response, RequestError> {
    core.auth
        .check(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
        .map_err(|e| RequestError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.message()))?;
    let framing = framing(headers)?;
    let gzip = content_encoding_is_gzip(headers)?;
    let raw = read_limited(body, core.limits.max_request_bytes).await?;
    let limits = core.limits.clone();
    // Decompressing and validating up to 10 MiB is CPU work: keep it off the async workers.
    let items = tokio::task::spawn_blocking(move || decode(raw, gzip, framing, &limits))
        .await
        .map_err(|e| {
            RequestError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let outcome = core.ingestor.ingest(items, TRANSPORT, traceparent).await;

    let stored = outcome.stored();
    let rejected = outcome
        .items
        .iter()
        .filter(|i| matches!(i, ItemOutcome::Rejected { .. }))
        .count();
    let unavailable_message = outcome.unavailable.as_ref().map(|e| {
        format!("{e}; events listed as not_stored were not stored, retry them after the Retry-After delay")
    });
    let status = if outcome.unavailable.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
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
        error: unavailable_message.as_deref().map(|message| ErrorDetail {
            code: "unavailable",
            message,
        }),
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
    }
    Ok(response)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `application/json` (or no content type): one object or an array of objects.
    Json,
    /// `application/x-ndjson`: one object per line; blank lines are skipped.
    Ndjson,
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

fn too_large(limit: usize, what: &str) -> RequestError {
    RequestError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        format!("the request body {what} exceeds {limit} bytes (limits.max_request_bytes)"),
    )
}

/// Reads the body, stopping as soon as it passes `limit` instead of buffering it whole.
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, RequestError> {
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
            return Err(too_large(limit, "is larger than"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Decompresses, splits by framing and validates each item.
fn decode(
    raw: Vec<u8>,
    gzip: bool,
    framing: Framing,
    limits: &Limits,
) -> Result<Vec<Result<ValidatedEvent, ItemError>>, RequestError> {
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .take(limits.max_request_bytes as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                RequestError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_gzip",
                    format!("the body is not valid gzip: {e}"),
                )
            })?;
        if out.len() > limits.max_request_bytes {
            return Err(too_large(limits.max_request_bytes, "decompressed"));
        }
        out
    } else {
        raw
    };
    let items: Vec<&[u8]> = match framing {
        Framing::Ndjson => body.split(|b| *b == b'\n').filter(|l| !l.trim_ascii().is_empty()).collect(),
        Framing::Json => match body.trim_ascii().first() {
            Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(&body)
                .map_err(|e| {
                    RequestError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_request",
                        format!("the body is not a valid JSON array: {e}; send NDJSON to have each line checked on its own"),
                    )
                })?
                .into_iter()
                .map(|v| v.get().as_bytes())
                .collect(),
            Some(b'{') => vec![body.trim_ascii()],
            Some(_) => {
                return Err(RequestError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_request",
                    "the body must be a JSON object, a JSON array of objects, or NDJSON",
                ));
            }
            None => vec![],
        },
    };
    if items.is_empty() {
        return Err(RequestError::new(
            StatusCode::BAD_REQUEST,
            "empty_request",
            "the request holds no events",
        ));
    }
    if items.len() > limits.max_events_per_request {
        return Err(RequestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!(
                "the request holds {} events; at most {} are allowed (limits.max_events_per_request)",
                items.len(),
                limits.max_events_per_request
            ),
        ));
    }
    Ok(items
        .into_iter()
        .map(|item| validate_envelope(item, limits))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &str = r#"{"event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"o","workspace_id":"w","data":{}}"#;

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn framings_split_into_items() {
        let l = Limits::default();
        assert_eq!(
            decode(EV.into(), false, Framing::Json, &l).unwrap().len(),
            1
        );
        assert_eq!(
            decode(format!("[{EV},{EV}]").into(), false, Framing::Json, &l)
                .unwrap()
                .len(),
            2
        );
        let nd = format!("{EV}\n\n{EV}\r\n{EV}");
        assert_eq!(
            decode(nd.clone().into(), false, Framing::Ndjson, &l)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            decode(gz(nd.as_bytes()), true, Framing::Ndjson, &l)
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn whole_request_errors() {
        let l = Limits {
            max_request_bytes: 1000,
            max_event_bytes: 500,
            max_events_per_request: 2,
            ..Limits::default()
        };
        let code = |r: Result<_, RequestError>| r.unwrap_err().code;
        assert_eq!(
            code(decode(b"not gzip".to_vec(), true, Framing::Json, &l)),
            "invalid_gzip"
        );
        assert_eq!(
            code(decode(gz(&vec![b' '; 2000]), true, Framing::Json, &l)),
            "request_too_large"
        );
        assert_eq!(
            code(decode(b"[{".to_vec(), false, Framing::Json, &l)),
            "malformed_request"
        );
        assert_eq!(
            code(decode(b"42".to_vec(), false, Framing::Json, &l)),
            "malformed_request"
        );
        assert_eq!(
            code(decode(b"  ".to_vec(), false, Framing::Ndjson, &l)),
            "empty_request"
        );
        let three = format!("{EV}\n{EV}\n{EV}");
        assert_eq!(
            code(decode(three.into(), false, Framing::Ndjson, &l)),
            "too_many_events"
        );
    }
}
