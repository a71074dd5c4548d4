//! How object stores (S3, Azure Blob) lay events out: one layout for both, so a bucket and a
//! container written by Auditstream look the same (DESIGN §6).
//!
//! - `ndjson` (the default): a request's events are grouped by org, workspace, event type
//!   and the hour they occurred, and each group becomes one object
//!   `<prefix>/<org>/<workspace>/<event_type>/YYYY/MM/DD/HH/<batch id>.ndjson[.gz]`, one
//!   event per line, gzip unless the destination says `COMPRESSION_NONE`. The batch id is a
//!   hash of the group's event identities (event ID and stream key), so a retried or
//!   redelivered batch names the same object again, and the same events of two streams name
//!   two objects.
//! - `per_event`: one object per event, `<prefix>/<org>/<workspace>/<event_type>/YYYY/MM/DD/HH/
//!   <event id>.<stream key>.json[.gz]`, the platform's historical one-file-per-event layout
//!   with the stream's key added (event IDs contain no `.`), so two streams sharing a bucket
//!   and prefix never write the same object. Uncompressed unless `COMPRESSION_GZIP`.
//!
//! Sinks write objects only where none exists (`If-None-Match: *`): a key names the stream
//! and its events, so an object already there was stored by an earlier write of the same
//! events and is never replaced (a re-sent event ID with another body cannot overwrite a
//! stored audit object); `classify::classify_object_store` counts that answer as delivered.
//!
//! The hour is the event's `occurred_at` in UTC, so the key does not depend on when it was
//! delivered. Key segments keep `[A-Za-z0-9._-]` (what IDs and event types consist of) and
//! replace anything else with `_`, so no value can add a path level.

use std::io::Write;

use auditstream_proto::v1 as pb;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::event::Event;

/// How a destination writes objects: its prefix, format and compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
    per_event: bool,
    gzip: bool,
}

/// One object to write.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub body: Bytes,
    pub content_type: &'static str,
    /// `Some("gzip")` for compressed objects (`Content-Encoding`).
    pub content_encoding: Option<&'static str>,
    /// Indexes into the request's events that this object carries.
    pub events: Vec<usize>,
}

impl Layout {
    /// The layout of a target's `prefix`, `format` and `compression` fields. Leading and
    /// trailing `/` of the prefix are dropped (keys never start with `/`).
    pub fn new(prefix: &str, format: pb::ObjectFormat, compression: pb::Compression) -> Self {
        let per_event = format == pb::ObjectFormat::PerEvent;
        let gzip = match compression {
            pb::Compression::Gzip => true,
            pb::Compression::None => false,
            pb::Compression::Unspecified => !per_event,
        };
        Layout {
            prefix: prefix.trim_matches('/').to_owned(),
            per_event,
            gzip,
        }
    }

    /// The prefix, without leading or trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn is_per_event(&self) -> bool {
        self.per_event
    }

    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// The objects that carry `events`, in the order their first event appears.
    pub fn objects(&self, events: &[Event]) -> Vec<Object> {
        if self.per_event {
            return events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let key = format!("{}/{}.json", self.partition(e), identity(e));
                    self.object(key, vec![i], e.body.to_vec())
                })
                .collect();
        }
        // Groups in order of appearance; a request holds few partitions, so a linear search
        // beats hashing the partition strings.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let partition = self.partition(e);
            match groups.iter_mut().find(|(p, _)| *p == partition) {
                Some((_, members)) => members.push(i),
                None => groups.push((partition, vec![i])),
            }
        }
        groups
            .into_iter()
            .map(|(partition, members)| {
                let mut hash = Sha256::new();
                let mut body =
                    Vec::with_capacity(members.iter().map(|&i| events[i].body.len() + 1).sum());
                for &i in &members {
                    hash.update(identity(&events[i]).as_bytes());
                    hash.update(b"\n");
                    body.extend_from_slice(&events[i].body);
                    body.push(b'\n');
                }
                let batch_id: String = hash.finalize()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                self.object(format!("{partition}/{batch_id}.ndjson"), members, body)
            })
            .collect()
    }

    /// A key under the prefix for a probe's test object, unique per call.
    pub fn probe_key(&self) -> String {
        let name = format!(
            ".auditstream-probe/{}-{:016x}",
            OffsetDateTime::now_utc().unix_timestamp(),
            rand::random::<u64>()
        );
        self.with_prefix(name)
    }

    /// `<prefix>/<org>/<workspace>/<event_type>/YYYY/MM/DD/HH`.
    fn partition(&self, e: &Event) -> String {
        let hour = match OffsetDateTime::parse(&e.occurred_at, &Rfc3339) {
            Ok(t) => {
                let t = t.to_offset(time::UtcOffset::UTC);
                format!(
                    "{:04}/{:02}/{:02}/{:02}",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour()
                )
            }
            // The gateway only accepts RFC 3339 timestamps; a message without one (written by
            // hand into the bus) still gets a stable key.
            Err(_) => "unknown-time".to_owned(),
        };
        self.with_prefix(format!(
            "{}/{}/{}/{hour}",
            segment(&e.org_id),
            segment(&e.workspace_id),
            segment(&e.event_type)
        ))
    }

    fn with_prefix(&self, rest: String) -> String {
        if self.prefix.is_empty() {
            rest
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    fn object(&self, mut key: String, events: Vec<usize>, body: Vec<u8>) -> Object {
        let content_type = if self.per_event {
            "application/json"
        } else {
            "application/x-ndjson"
        };
        if !self.gzip {
            return Object {
                key,
                body: body.into(),
                content_type,
                content_encoding: None,
                events,
            };
        }
        key.push_str(".gz");
        Object {
            key,
            body: gzip(&body).into(),
            content_type,
            content_encoding: Some("gzip"),
            events,
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// What names an event's object: `<event id>.<stream key>`, or the event ID alone for events
/// without a stream key (built in tests or probes). Event IDs contain no `.`, so the two
/// parts cannot run into each other.
fn identity(e: &Event) -> String {
    if e.stream_key.is_empty() {
        segment(&e.event_id)
    } else {
        format!("{}.{}", segment(&e.event_id), segment(&e.stream_key))
    }
}

/// One key segment: `[A-Za-z0-9._-]` kept, anything else `_`; empty or dot-only values (which
/// some tools treat as path navigation) become `_`.
fn segment(value: &str) -> String {
    let s: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "_".to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn event(id: &str, org: &str, ws: &str, ty: &str, at: &str) -> Event {
        let mut e = Event::new(id, format!(r#"{{"id":"{id}"}}"#));
        e.org_id = org.into();
        e.workspace_id = ws.into();
        e.event_type = ty.into();
        e.occurred_at = at.into();
        e
    }

    fn gunzip(b: &[u8]) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn ndjson_groups_by_partition_with_deterministic_keys() {
        let layout = Layout::new(
            "/audit/",
            pb::ObjectFormat::Unspecified,
            pb::Compression::Unspecified,
        );
        let events = vec![
            event("e1", "o1", "w1", "job_status", "2026-11-23T10:15:00Z"),
            event("e2", "o1", "w2", "job_status", "2026-11-23T10:16:00Z"),
            // 23:30 at -02:00 is 01:30 UTC the next day.
            event("e3", "o1", "w1", "job_status", "2026-11-22T23:30:00-02:00"),
            event("e4", "o1", "w1", "job_status", "2026-11-23T10:59:59.9Z"),
        ];
        let objects = layout.objects(&events);
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(objects.len(), 3, "{keys:?}");
        assert!(
            keys[0].starts_with("audit/o1/w1/job_status/2026/11/23/10/"),
            "{keys:?}"
        );
        assert!(keys[0].ends_with(".ndjson.gz"));
        assert!(keys[1].starts_with("audit/o1/w2/job_status/2026/11/23/10/"));
        assert!(keys[2].starts_with("audit/o1/w1/job_status/2026/11/23/01/"));
        assert_eq!(objects[0].events, vec![0, 3]);
        assert_eq!(objects[0].content_encoding, Some("gzip"));
        assert_eq!(
            gunzip(&objects[0].body),
            "{\"id\":\"e1\"}\n{\"id\":\"e4\"}\n"
        );
        // The same events give the same keys; other events another key.
        let again = layout.objects(&events);
        assert_eq!(again[0].key, objects[0].key);
        let fewer = layout.objects(&events[..1]);
        assert_ne!(fewer[0].key, objects[0].key);
    }

    #[test]
    fn per_event_is_keyed_by_event_id_and_uncompressed_by_default() {
        let layout = Layout::new("", pb::ObjectFormat::PerEvent, pb::Compression::Unspecified);
        let objects = layout.objects(&[event(
            "ev-1",
            "o",
            "w",
            "user_activity",
            "2026-01-02T03:04:05Z",
        )]);
        assert_eq!(objects[0].key, "o/w/user_activity/2026/01/02/03/ev-1.json");
        assert_eq!(&objects[0].body[..], br#"{"id":"ev-1"}"#);
        assert_eq!(objects[0].content_encoding, None);
        let gz = Layout::new("p", pb::ObjectFormat::PerEvent, pb::Compression::Gzip);
        assert_eq!(
            gz.objects(&[event("ev-1", "o", "w", "t", "2026-01-02T03:04:05Z")])[0].key,
            "p/o/w/t/2026/01/02/03/ev-1.json.gz"
        );
    }

    #[test]
    fn keys_name_the_stream() {
        let keyed = |stream: &str| {
            let mut e = event("ev-1", "o", "w", "t", "2026-01-02T03:04:05Z");
            e.stream_key = stream.into();
            e
        };
        let per_event = Layout::new("p", pb::ObjectFormat::PerEvent, pb::Compression::None);
        assert_eq!(
            per_event.objects(&[keyed("s-a")])[0].key,
            "p/o/w/t/2026/01/02/03/ev-1.s-a.json"
        );
        assert_eq!(
            per_event.objects(&[keyed("s/../b")])[0].key,
            "p/o/w/t/2026/01/02/03/ev-1.s_.._b.json",
            "a key cannot add a path level"
        );
        // The same events of two streams: two batch objects; of one stream: one.
        let ndjson = Layout::new("p", pb::ObjectFormat::Ndjson, pb::Compression::None);
        let batch = |stream: &str| ndjson.objects(&[keyed(stream)])[0].key.clone();
        assert_ne!(batch("s-a"), batch("s-b"));
        assert_eq!(batch("s-a"), batch("s-a"));
        assert_ne!(batch("s-a"), batch(""));
    }

    #[test]
    fn segments_cannot_add_path_levels() {
        let layout = Layout::new("", pb::ObjectFormat::PerEvent, pb::Compression::None);
        let o = &layout.objects(&[event("../x/y", "", "..", "a b", "not a time")])[0];
        assert_eq!(o.key, "_/_/a_b/unknown-time/.._x_y.json");
    }
}
