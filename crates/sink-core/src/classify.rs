//! What a destination's answer means for delivery: a classifier, not `if`s scattered in
//! sinks (as vector's `RetryLogic`). Sinks speaking HTTP use [`classify_http`]; SDK-based
//! sinks map their error codes to the same [`Class`], and object stores (S3, Azure Blob) fall
//! back on [`classify_object_store`] for the codes they do not list.

use std::time::Duration;

/// What to do with a batch after the destination answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    Delivered,
    /// Try again later (timeouts, connection errors, 408, 429, 5xx but 501), no sooner than
    /// `retry_after` if the destination said so.
    Transient {
        retry_after: Option<Duration>,
    },
    /// The destination is misconfigured (credentials refused, target missing): it is broken
    /// until a probe or a configuration change shows otherwise.
    Configuration,
    /// The batch is too large for the destination: split it and try the halves.
    TooLarge,
    /// The destination refuses this data for good (a 400 on one event): to the DLQ, once
    /// narrowed down to the event.
    Rejected,
}

/// The classification of an HTTP status, with the response's `Retry-After` (if any).
pub fn classify_http(status: u16, retry_after: Option<&str>, now: time::OffsetDateTime) -> Class {
    match status {
        200..=299 => Class::Delivered,
        408 | 429 | 500 | 502..=599 => Class::Transient {
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        413 => Class::TooLarge,
        // 501: the destination does not implement what we ask, retrying will not help.
        401 | 403 | 404 | 405 | 407 | 410 | 501 => Class::Configuration,
        400..=499 => Class::Rejected,
        // 1xx/3xx final answers mean an endpoint that does not behave like a log intake.
        _ => Class::Configuration,
    }
}

/// Error answers of an object store's conditional create (`If-None-Match: *`, how object
/// sinks write) that found the key taken: S3's 412 `PreconditionFailed`, Azure Blob's 409
/// `BlobAlreadyExists` (Put Blob, Put Block List) and 412 `ConditionNotMet`.
const ALREADY_STORED: &[(u16, &str)] = &[
    (412, "PreconditionFailed"),
    (409, "BlobAlreadyExists"),
    (412, "ConditionNotMet"),
];

/// The classification of an object store's error answer (status and error code) that the sink
/// did not classify by its code.
///
/// - The object exists already: object keys name the stream and its events, so an earlier
///   write of the same events for the same stream stored it (a retry after a lost answer, a
///   redelivery, a re-sent event id). The stored object stays as it is, and the events are
///   delivered.
/// - Any other 4xx but 413 is the destination's configuration (a bucket policy, Object Lock,
///   a KMS key, an unsupported header), not the data: an object store takes any bytes under
///   keys the sink builds itself. Classing it as a refusal would dead-letter every event while
///   the destination looks healthy; as configuration the destination is broken, its events
///   wait in the backlog and the admins are told what the store said.
pub fn classify_object_store(
    status: u16,
    code: Option<&str>,
    retry_after: Option<&str>,
    now: time::OffsetDateTime,
) -> Class {
    if code.is_some_and(|code| ALREADY_STORED.contains(&(status, code))) {
        return Class::Delivered;
    }
    match classify_http(status, retry_after, now) {
        Class::Rejected => Class::Configuration,
        class => class,
    }
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past means
/// "now"; anything unparseable is ignored.
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = time::PrimitiveDateTime::parse(value, &IMF_FIXDATE)
        .ok()?
        .assume_utc();
    Some(Duration::try_from(date - now).unwrap_or(Duration::ZERO))
}

/// The IMF-fixdate format of HTTP dates (`Sun, 06 Nov 1994 08:49:37 GMT`).
static IMF_FIXDATE: std::sync::LazyLock<
    Vec<time::format_description::BorrowedFormatItem<'static>>,
> = std::sync::LazyLock::new(|| {
    time::format_description::parse_borrowed::<1>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
    )
    .expect("valid format description")
});

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(784_111_777).unwrap() // Sun, 06 Nov 1994 08:49:37 GMT
    }

    #[test]
    fn statuses_map_to_the_design_classes() {
        let c = |s| classify_http(s, None, now());
        assert_eq!(c(200), Class::Delivered);
        assert_eq!(c(204), Class::Delivered);
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(c(s), Class::Transient { retry_after: None }, "{s}");
        }
        for s in [401, 403, 404, 501] {
            assert_eq!(c(s), Class::Configuration, "{s}");
        }
        assert_eq!(c(413), Class::TooLarge);
        assert_eq!(c(400), Class::Rejected);
        assert_eq!(c(422), Class::Rejected);
    }

    #[test]
    fn object_stores_deliver_what_is_stored_already_and_refuse_no_data_but_by_size() {
        let c = |status, code| classify_object_store(status, code, None, now());
        assert_eq!(c(412, Some("PreconditionFailed")), Class::Delivered);
        assert_eq!(c(409, Some("BlobAlreadyExists")), Class::Delivered);
        assert_eq!(c(412, Some("ConditionNotMet")), Class::Delivered);
        // Only the conditional create's own answers: another 409 or 412 is not "stored".
        assert_eq!(c(409, Some("LeaseIdMissing")), Class::Configuration);
        assert_eq!(c(412, None), Class::Configuration);
        for (status, code) in [(400, Some("InvalidRequest")), (400, None), (422, None)] {
            assert_eq!(c(status, code), Class::Configuration, "{status} {code:?}");
        }
        assert_eq!(c(413, None), Class::TooLarge);
        assert_eq!(c(503, None), Class::Transient { retry_after: None });
        assert_eq!(c(200, None), Class::Delivered);
        assert_eq!(
            classify_object_store(429, None, Some("4"), now()),
            Class::Transient {
                retry_after: Some(Duration::from_secs(4))
            }
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(
            classify_http(429, Some("7"), now()),
            Class::Transient {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:40:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(
            classify_http(503, Some("soon"), now()),
            Class::Transient { retry_after: None }
        );
    }
}
