//! Ingest request bodies: framing (JSON object, JSON array, NDJSON), optional gzip, and the
//! request-level limits, down to one validation result per item.
//!
//! It lives here rather than in the gateway so the fuzz targets (`fuzz/`) exercise exactly
//! the parser the gateway runs, without a server around it. Errors about the request as a
//! whole are [`BodyError`]s; problems with one item are that item's [`ItemError`].

use std::io::Read as _;

use serde_json::value::RawValue;

use crate::{ItemError, Limits, ValidatedEvent, validate_envelope};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json` (or no content type): one object or an array of objects.
    Json,
    /// `application/x-ndjson`: one object per line; blank lines are skipped.
    Ndjson,
}

/// Why a whole request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyErrorKind {
    /// The body cannot be read as events (HTTP 400).
    Malformed,
    /// A size or count limit was passed (HTTP 413).
    TooLarge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub kind: BodyErrorKind,
    /// Stable machine-readable code (`invalid_gzip`, `malformed_request`, …).
    pub code: &'static str,
    pub message: String,
}

impl BodyError {
    fn malformed(code: &'static str, message: impl Into<String>) -> Self {
        BodyError {
            kind: BodyErrorKind::Malformed,
            code,
            message: message.into(),
        }
    }
}

/// The error for a body (raw or decompressed) over `limits.max_request_bytes`.
pub fn too_large(limit: usize, what: &str) -> BodyError {
    BodyError {
        kind: BodyErrorKind::TooLarge,
        code: "request_too_large",
        message: format!(
            "the request body {what} exceeds {limit} bytes (limits.max_request_bytes)"
        ),
    }
}

/// Decompresses, splits by framing and validates each item. The caller has already bounded
/// `raw` by `limits.max_request_bytes`; decompression is bounded here (a gzip bomb stops at
/// the same limit).
pub fn decode(
    raw: Vec<u8>,
    gzip: bool,
    framing: Framing,
    limits: &Limits,
) -> Result<Vec<Result<ValidatedEvent, ItemError>>, BodyError> {
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .take(limits.max_request_bytes as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                BodyError::malformed("invalid_gzip", format!("the body is not valid gzip: {e}"))
            })?;
        if out.len() > limits.max_request_bytes {
            return Err(too_large(limits.max_request_bytes, "decompressed"));
        }
        out
    } else {
        raw
    };
    let items: Vec<&[u8]> = match framing {
        Framing::Ndjson => body
            .split(|b| *b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .collect(),
        Framing::Json => match body.trim_ascii().first() {
            Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(&body)
                .map_err(|e| {
                    BodyError::malformed(
                        "malformed_request",
                        format!("the body is not a valid JSON array: {e}; send NDJSON to have each line checked on its own"),
                    )
                })?
                .into_iter()
                .map(|v| v.get().as_bytes())
                .collect(),
            Some(b'{') => vec![body.trim_ascii()],
            Some(_) => {
                return Err(BodyError::malformed(
                    "malformed_request",
                    "the body must be a JSON object, a JSON array of objects, or NDJSON",
                ));
            }
            None => vec![],
        },
    };
    if items.is_empty() {
        return Err(BodyError::malformed(
            "empty_request",
            "the request holds no events",
        ));
    }
    if items.len() > limits.max_events_per_request {
        return Err(BodyError {
            kind: BodyErrorKind::TooLarge,
            code: "too_many_events",
            message: format!(
                "the request holds {} events; at most {} are allowed (limits.max_events_per_request)",
                items.len(),
                limits.max_events_per_request
            ),
        });
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

    /// Found by the `ingest_body` fuzz target: numbers beyond f64's range are valid JSON
    /// (RFC 8259 sets no limit) and `data` is the platform's, so the event is accepted and
    /// stored byte for byte rather than refused; a destination that cannot take it refuses
    /// that one event, which then waits in the DLQ with the destination's reason.
    #[test]
    fn numbers_beyond_f64_are_kept_verbatim() {
        let huge = format!("4{}", "6".repeat(400));
        let event = EV.replace(r#""data":{}"#, &format!(r#""data":{{"recipe_id":{huge}}}"#));
        let items = decode(
            event.clone().into(),
            false,
            Framing::Json,
            &Limits::default(),
        )
        .unwrap();
        let stored = items[0].as_ref().expect("accepted");
        assert_eq!(stored.body, event.as_bytes());
        assert!(serde_json::from_slice::<serde_json::Value>(&stored.body).is_err());
    }

    #[test]
    fn whole_request_errors() {
        let l = Limits {
            max_request_bytes: 1000,
            max_event_bytes: 500,
            max_events_per_request: 2,
            ..Limits::default()
        };
        let code = |r: Result<_, BodyError>| r.unwrap_err().code;
        assert_eq!(
            code(decode(b"not gzip".to_vec(), true, Framing::Json, &l)),
            "invalid_gzip"
        );
        let bomb = decode(gz(&vec![b' '; 2000]), true, Framing::Json, &l).unwrap_err();
        assert_eq!(
            (bomb.code, bomb.kind),
            ("request_too_large", BodyErrorKind::TooLarge)
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
