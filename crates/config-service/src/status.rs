//! How a sink's `ReportStatus` is combined with the stored status.
//!
//! Every replica of a sink type reports on the streams it delivers, so the counters marked
//! "increment" in the proto (`delivered_events`, `dead_lettered_events`, `expired_events`,
//! `failed_requests`, and `replayed_events`) are what one replica counted since its previous
//! report; they are added to the stored totals. `replayed_events` restarts at 0 when the
//! destination enters BROKEN, so the recovery mail tells how many events were replayed since
//! the break. Everything else is the reporter's current view and replaces the stored value,
//! except `last_delivery_at`, which keeps the newest time any replica reported.

use auditstream_proto::v1::{HealthState, StreamStatus};

/// The status after `report`, given the stored one. `updated_at` is the time of the merge.
pub fn merge(
    stored: Option<&StreamStatus>,
    report: StreamStatus,
    updated_at: String,
) -> StreamStatus {
    let empty = StreamStatus::default();
    let stored = stored.unwrap_or(&empty);
    let entered_broken =
        report.state() == HealthState::Broken && stored.state() != HealthState::Broken;
    let replayed_before = if entered_broken {
        0
    } else {
        stored.replayed_events
    };
    StreamStatus {
        last_delivery_at: newest(&stored.last_delivery_at, &report.last_delivery_at),
        updated_at,
        replayed_events: replayed_before.saturating_add(report.replayed_events),
        delivered_events: stored
            .delivered_events
            .saturating_add(report.delivered_events),
        dead_lettered_events: stored
            .dead_lettered_events
            .saturating_add(report.dead_lettered_events),
        expired_events: stored.expired_events.saturating_add(report.expired_events),
        failed_requests: stored
            .failed_requests
            .saturating_add(report.failed_requests),
        // As reported: stream_id, state, last_error, hint, backlog_depth, dlq_depth,
        // expiring_events, oldest_expires_at.
        ..report
    }
}

/// The later of two RFC 3339 times; an empty one loses, an unparsable one loses to a valid one.
fn newest(a: &str, b: &str) -> String {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => if y >= x { b } else { a }.to_owned(),
        (Some(_), None) => a.to_owned(),
        (None, Some(_)) => b.to_owned(),
        (None, None) => if b.is_empty() { a } else { b }.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: HealthState) -> StreamStatus {
        StreamStatus {
            stream_id: "s1".into(),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn counters_add_up_and_the_rest_is_replaced() {
        let first = merge(
            None,
            StreamStatus {
                delivered_events: 10,
                dead_lettered_events: 1,
                expired_events: 2,
                failed_requests: 3,
                backlog_depth: 50,
                expiring_events: 7,
                oldest_expires_at: "2026-11-30T10:00:00Z".into(),
                last_error: "503".into(),
                ..report(HealthState::Retrying)
            },
            "t1".into(),
        );
        let second = merge(
            Some(&first),
            StreamStatus {
                delivered_events: 5,
                failed_requests: 1,
                backlog_depth: 4,
                ..report(HealthState::Healthy)
            },
            "t2".into(),
        );
        assert_eq!(
            (
                second.delivered_events,
                second.dead_lettered_events,
                second.expired_events,
                second.failed_requests
            ),
            (15, 1, 2, 4)
        );
        assert_eq!(second.state(), HealthState::Healthy);
        assert_eq!(
            (
                second.backlog_depth,
                second.expiring_events,
                second.oldest_expires_at.as_str(),
                second.last_error.as_str(),
                second.updated_at.as_str()
            ),
            (4, 0, "", "", "t2")
        );
    }

    #[test]
    fn replayed_restarts_when_the_destination_breaks() {
        let mut s = merge(
            None,
            StreamStatus {
                replayed_events: 9,
                ..report(HealthState::Healthy)
            },
            String::new(),
        );
        for (state, replayed, total) in [
            (HealthState::Broken, 2, 2),
            // Still broken: increments accumulate.
            (HealthState::Broken, 1, 3),
            (HealthState::Recovering, 40, 43),
            (HealthState::Healthy, 2, 45),
            (HealthState::Broken, 0, 0),
        ] {
            s = merge(
                Some(&s),
                StreamStatus {
                    replayed_events: replayed,
                    ..report(state)
                },
                String::new(),
            );
            assert_eq!(s.replayed_events, total, "{state:?}");
        }
    }

    #[test]
    fn last_delivery_keeps_the_newest() {
        let at = |t: &str| StreamStatus {
            last_delivery_at: t.into(),
            ..report(HealthState::Healthy)
        };
        let s = merge(None, at("2026-11-23T10:00:00Z"), String::new());
        let s = merge(Some(&s), at("2026-11-23T09:00:00Z"), String::new());
        assert_eq!(s.last_delivery_at, "2026-11-23T10:00:00Z");
        let s = merge(Some(&s), at(""), String::new());
        assert_eq!(s.last_delivery_at, "2026-11-23T10:00:00Z");
        let s = merge(Some(&s), at("2026-11-23T10:00:01.5+00:00"), String::new());
        assert_eq!(s.last_delivery_at, "2026-11-23T10:00:01.5+00:00");
    }
}
