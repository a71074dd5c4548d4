//! What a destination's answer means for delivery: a classifier, not `if`s scattered in
//! sinks (as vector's `RetryLogic`). Sinks speaking HTTP use [`classify_http`]; SDK-based
//! sinks map their error codes to the same [`Class`].

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
