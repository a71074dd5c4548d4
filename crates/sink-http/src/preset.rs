//! How each preset frames a request: body encoding, content type, probe body, per-request
//! limits and the framing overhead that the caps reserve.
//!
//! Event bodies are the rendered JSON, spliced into the request as they are: never parsed and
//! re-serialized (Splunk's wrapper is written around the bytes).

use auditstream_sink_core::{deliver::RequestCaps, event::Event};

use crate::config::HttpSinkConfig;

/// Sumo Logic HTTP source: "batched requests up to but not exceeding 1MB of uncompressed data".
pub(crate) const SUMO_MAX_BYTES: usize = 1_000_000;
/// Datadog logs intake: 5 MB uncompressed payload per request.
pub(crate) const DATADOG_MAX_BYTES: usize = 5_000_000;
/// Datadog logs intake: at most 1000 entries in an array.
pub(crate) const DATADOG_MAX_EVENTS: usize = 1000;
/// Splunk Cloud HEC's maximum content length (Splunk Enterprise's default is larger).
pub(crate) const SPLUNK_MAX_BYTES: usize = 1_000_000;

/// Longest `time` value written for Splunk: epoch seconds with milliseconds; years up to 9999
/// take 16 characters, negative years 17.
const SPLUNK_TIME_MAX: usize = 20;
/// Event types longer than this (or with other characters than `[A-Za-z0-9_.:-]`) are not
/// put into the default Splunk sourcetype, so the wrapper's size has a known bound.
const SPLUNK_EVENT_TYPE_MAX: usize = 64;
const SPLUNK_DEFAULT_SOURCETYPE: &str = "auditstream";

/// The generic preset's body framing (pseudo-setting `auditstream-framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `[e1,e2,...]`, `Content-Type: application/json` (the default).
    JsonArray,
    /// One event per line, each line ending in `\n`, `Content-Type: application/x-ndjson`.
    Ndjson,
}

/// A destination's preset, with the settings that change its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preset {
    Generic(Framing),
    SumoLogic,
    Datadog,
    SplunkHec(SplunkFields),
}

/// Splunk HEC metadata written into every event's wrapper, as JSON fragments
/// (`,"index":"main"`), rendered once when the destination is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplunkFields {
    /// `,"sourcetype":"..."` when set by `splunk-sourcetype`; otherwise each event gets
    /// `auditstream:<event_type>`.
    pub(crate) sourcetype: Option<String>,
    /// `,"index":...`, `,"host":...`, `,"source":...` (empty when not set).
    pub(crate) rest: String,
}

impl SplunkFields {
    pub(crate) fn new(
        sourcetype: Option<&str>,
        index: Option<&str>,
        host: Option<&str>,
        source: Option<&str>,
    ) -> Self {
        let field = |name: &str, value: Option<&str>| {
            value
                .map(|v| format!(",\"{name}\":{}", json_string(v)))
                .unwrap_or_default()
        };
        SplunkFields {
            sourcetype: sourcetype.map(|s| field("sourcetype", Some(s))),
            rest: [
                field("index", index),
                field("host", host),
                field("source", source),
            ]
            .concat(),
        }
    }

    /// The most bytes one event's wrapper adds to its body.
    fn overhead(&self) -> usize {
        let sourcetype = match &self.sourcetype {
            Some(s) => s.len(),
            // ,"sourcetype":"auditstream:<event type>"
            None => ",\"sourcetype\":\"".len() + "auditstream:".len() + SPLUNK_EVENT_TYPE_MAX + 1,
        };
        "{\"time\":".len()
            + SPLUNK_TIME_MAX
            + ",\"event\":".len()
            + "null".len() // an empty body is written as null
            + sourcetype
            + self.rest.len()
            + "}".len()
    }
}

impl Preset {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Preset::Generic(_) => "generic",
            Preset::SumoLogic => "sumo_logic",
            Preset::Datadog => "datadog",
            Preset::SplunkHec(_) => "splunk_hec",
        }
    }

    pub(crate) fn content_type(&self) -> &'static str {
        match self {
            Preset::Generic(Framing::JsonArray) | Preset::Datadog | Preset::SplunkHec(_) => {
                "application/json"
            }
            Preset::Generic(Framing::Ndjson) => "application/x-ndjson",
            // Sumo ingests any body as log lines unless the content type names a metrics
            // format; one event per line.
            Preset::SumoLogic => "text/plain",
        }
    }

    /// The service's limits on one request: (body bytes before compression, events), never
    /// above the configured maxima.
    pub(crate) fn limits(&self, config: &HttpSinkConfig) -> (usize, usize) {
        let (bytes, events) = (config.max_request_bytes, config.max_request_events);
        match self {
            Preset::Generic(_) => (bytes, events),
            Preset::SumoLogic => (bytes.min(SUMO_MAX_BYTES), events),
            Preset::Datadog => (bytes.min(DATADOG_MAX_BYTES), events.min(DATADOG_MAX_EVENTS)),
            Preset::SplunkHec(_) => (bytes.min(SPLUNK_MAX_BYTES), events),
        }
    }

    /// (bytes per event, bytes per request) that framing adds to the event bodies.
    fn overhead(&self) -> (usize, usize) {
        match self {
            // '[' and ']', a ',' between events (counted for every event).
            Preset::Generic(Framing::JsonArray) | Preset::Datadog => (1, 2),
            // '\n' after every event.
            Preset::Generic(Framing::Ndjson) | Preset::SumoLogic => (1, 0),
            Preset::SplunkHec(fields) => (fields.overhead(), 0),
        }
    }

    /// Caps for sink-core, which sums the bodies' sizes: the framing of `max_events` events
    /// is reserved from the byte limit, so a request within the caps is encoded within the
    /// service's limit. Where that reservation would take more than half of the limit, fewer
    /// events per request are allowed instead.
    pub(crate) fn caps(&self, config: &HttpSinkConfig) -> RequestCaps {
        let (limit, events) = self.limits(config);
        let (per_event, fixed) = self.overhead();
        let budget = (limit / 2).saturating_sub(fixed);
        let max_events = events.min(budget / per_event).max(1);
        RequestCaps {
            max_events,
            max_bytes: limit.saturating_sub(fixed + max_events * per_event).max(1),
        }
    }

    /// The body of a probe: a request the service accepts without storing an event.
    pub(crate) fn probe_body(&self) -> &'static [u8] {
        match self {
            Preset::Generic(Framing::JsonArray) | Preset::Datadog => b"[]",
            Preset::Generic(Framing::Ndjson) | Preset::SumoLogic | Preset::SplunkHec(_) => b"",
        }
    }

    /// The request body for `events`.
    pub(crate) fn encode(&self, events: &[Event]) -> Vec<u8> {
        let bodies: usize = events.iter().map(|e| e.body.len()).sum();
        let (per_event, fixed) = self.overhead();
        let mut out = Vec::with_capacity(bodies + fixed + per_event * events.len());
        match self {
            Preset::Generic(Framing::JsonArray) | Preset::Datadog => {
                out.push(b'[');
                for (i, event) in events.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&event.body);
                }
                out.push(b']');
            }
            Preset::Generic(Framing::Ndjson) | Preset::SumoLogic => {
                for event in events {
                    push_single_line(&mut out, &event.body);
                    out.push(b'\n');
                }
            }
            Preset::SplunkHec(fields) => {
                for event in events {
                    out.push(b'{');
                    if let Some(time) = splunk_time(&event.occurred_at) {
                        out.extend_from_slice(b"\"time\":");
                        out.extend_from_slice(time.as_bytes());
                        out.push(b',');
                    }
                    out.extend_from_slice(b"\"event\":");
                    if event.body.is_empty() {
                        out.extend_from_slice(b"null");
                    } else {
                        out.extend_from_slice(&event.body);
                    }
                    match &fields.sourcetype {
                        Some(sourcetype) => out.extend_from_slice(sourcetype.as_bytes()),
                        None => {
                            out.extend_from_slice(b",\"sourcetype\":\"");
                            out.extend_from_slice(SPLUNK_DEFAULT_SOURCETYPE.as_bytes());
                            if plain_event_type(&event.event_type) {
                                out.push(b':');
                                out.extend_from_slice(event.event_type.as_bytes());
                            }
                            out.push(b'"');
                        }
                    }
                    out.extend_from_slice(fields.rest.as_bytes());
                    out.push(b'}');
                }
            }
        }
        out
    }
}

/// Appends a JSON text as one line. Line breaks can only be whitespace between tokens in valid
/// JSON (inside strings they are escaped), so they become spaces: the bytes are not parsed.
fn push_single_line(out: &mut Vec<u8>, body: &[u8]) {
    if body.iter().any(|&b| b == b'\n' || b == b'\r') {
        out.extend(
            body.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(body);
    }
}

/// An event type that goes into the default sourcetype as it is.
fn plain_event_type(event_type: &str) -> bool {
    !event_type.is_empty()
        && event_type.len() <= SPLUNK_EVENT_TYPE_MAX
        && event_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Splunk's `time`: epoch seconds with milliseconds (`1700000000.123`) from an RFC 3339
/// timestamp; `None` when it does not parse (Splunk then uses the time it received the event).
pub(crate) fn splunk_time(occurred_at: &str) -> Option<String> {
    let at =
        time::OffsetDateTime::parse(occurred_at, &time::format_description::well_known::Rfc3339)
            .ok()?;
    let millis = at.unix_timestamp_nanos().div_euclid(1_000_000);
    Some(format!(
        "{}.{:03}",
        millis.div_euclid(1000),
        millis.rem_euclid(1000)
    ))
}

/// A JSON string literal of our own text (settings), with escapes.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, body: &str) -> Event {
        let mut e = Event::new(id, body.to_owned());
        e.event_type = "user_activity".into();
        e.occurred_at = "2026-03-01T12:34:56.789Z".into();
        e
    }

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn generic_json_array_and_ndjson() {
        let events = [event("a", r#"{"id":"a"}"#), event("b", r#"{"id":"b"}"#)];
        assert_eq!(
            text(Preset::Generic(Framing::JsonArray).encode(&events)),
            r#"[{"id":"a"},{"id":"b"}]"#
        );
        assert_eq!(text(Preset::Generic(Framing::JsonArray).encode(&[])), "[]");
        assert_eq!(
            text(Preset::Generic(Framing::Ndjson).encode(&events)),
            "{\"id\":\"a\"}\n{\"id\":\"b\"}\n"
        );
        assert_eq!(
            Preset::Generic(Framing::Ndjson).content_type(),
            "application/x-ndjson"
        );
        assert_eq!(
            Preset::Generic(Framing::JsonArray).content_type(),
            "application/json"
        );
    }

    #[test]
    fn ndjson_keeps_pretty_printed_bodies_on_one_line() {
        let events = [event("a", "{\n  \"id\": \"a\\nb\"\r\n}")];
        assert_eq!(
            text(Preset::SumoLogic.encode(&events)),
            "{   \"id\": \"a\\nb\"  }\n"
        );
        assert_eq!(Preset::SumoLogic.content_type(), "text/plain");
    }

    #[test]
    fn datadog_is_a_json_array() {
        let events = [event("a", r#"{"id":"a"}"#), event("b", r#"{"id":"b"}"#)];
        assert_eq!(
            text(Preset::Datadog.encode(&events)),
            r#"[{"id":"a"},{"id":"b"}]"#
        );
        assert_eq!(Preset::Datadog.probe_body(), b"[]");
    }

    #[test]
    fn splunk_wraps_each_event() {
        let events = [event("a", r#"{"id":"a"}"#), event("b", r#"{"id":"b"}"#)];
        let default = Preset::SplunkHec(SplunkFields::default());
        assert_eq!(
            text(default.encode(&events)),
            concat!(
                r#"{"time":1772368496.789,"event":{"id":"a"},"sourcetype":"auditstream:user_activity"}"#,
                r#"{"time":1772368496.789,"event":{"id":"b"},"sourcetype":"auditstream:user_activity"}"#
            )
        );
        let set = Preset::SplunkHec(SplunkFields::new(
            Some("audit:json"),
            Some("security"),
            Some("gw-1"),
            Some("auditstream"),
        ));
        assert_eq!(
            text(set.encode(&events[..1])),
            r#"{"time":1772368496.789,"event":{"id":"a"},"sourcetype":"audit:json","index":"security","host":"gw-1","source":"auditstream"}"#
        );
        // No parseable time: Splunk's receive time; odd event types stay out of the sourcetype.
        let mut odd = event("c", "");
        odd.occurred_at = "yesterday".into();
        odd.event_type = "a\"b".into();
        assert_eq!(
            text(default.encode(&[odd])),
            r#"{"event":null,"sourcetype":"auditstream"}"#
        );
    }

    #[test]
    fn splunk_time_is_epoch_seconds_with_milliseconds() {
        assert_eq!(splunk_time("1970-01-01T00:00:00Z").unwrap(), "0.000");
        assert_eq!(
            splunk_time("2026-03-01T12:34:56.789123Z").unwrap(),
            "1772368496.789"
        );
        assert_eq!(
            splunk_time("2026-03-01T14:34:56.5+02:00").unwrap(),
            "1772368496.500"
        );
        assert_eq!(splunk_time("1969-12-31T23:59:58.5Z").unwrap(), "-2.500");
        assert_eq!(splunk_time(""), None);
        assert_eq!(splunk_time("2026-03-01"), None);
    }

    /// The worst case sink-core can hand over: `max_events` events whose bodies sum to
    /// `max_bytes`. Its encoding must stay within the service's limit.
    fn worst_case_fits(preset: &Preset, config: &HttpSinkConfig) {
        let caps = preset.caps(config);
        let (limit, events) = preset.limits(config);
        assert!(caps.max_events <= events, "{preset:?}");
        let per = caps.max_bytes / caps.max_events;
        let mut batch: Vec<Event> = (0..caps.max_events)
            .map(|i| {
                let mut e = event(&i.to_string(), "");
                e.body = vec![b'1'; per].into();
                e.event_type = "x".repeat(SPLUNK_EVENT_TYPE_MAX);
                e.occurred_at = "9999-12-31T23:59:59.999Z".into();
                e
            })
            .collect();
        let rest = caps.max_bytes - per * caps.max_events;
        batch[0].body = vec![b'1'; per + rest].into();
        let encoded = preset.encode(&batch).len();
        assert!(
            encoded <= limit,
            "{preset:?}: {encoded} bytes for caps {caps:?}, limit {limit}"
        );
    }

    #[test]
    fn caps_reserve_the_framing() {
        let config = HttpSinkConfig::default();
        let splunk = Preset::SplunkHec(SplunkFields::new(None, Some("main"), None, None));
        for preset in [
            Preset::Generic(Framing::JsonArray),
            Preset::Generic(Framing::Ndjson),
            Preset::SumoLogic,
            Preset::Datadog,
            splunk.clone(),
        ] {
            worst_case_fits(&preset, &config);
        }
        assert_eq!(
            Preset::Datadog.caps(&config),
            RequestCaps {
                max_events: 1000,
                max_bytes: 5_000_000 - 1002
            }
        );
        assert_eq!(
            Preset::SumoLogic.caps(&config),
            RequestCaps {
                max_events: 1000,
                max_bytes: 1_000_000 - 1000
            }
        );
        assert_eq!(
            Preset::Generic(Framing::JsonArray).caps(&config),
            RequestCaps {
                max_events: 1000,
                max_bytes: 5 * 1024 * 1024 - 1002
            }
        );
        let caps = splunk.caps(&config);
        assert_eq!(caps.max_events, 1000);
        assert!(caps.max_bytes > 800_000, "{caps:?}");

        // Configured maxima lower than the service's win; a tight byte limit lowers the
        // number of events rather than leaving no room for bodies.
        let tight = HttpSinkConfig {
            max_request_bytes: 20_000,
            max_request_events: 500,
            ..HttpSinkConfig::default()
        };
        assert_eq!(
            Preset::Datadog.caps(&tight),
            RequestCaps {
                max_events: 500,
                max_bytes: 20_000 - 502
            }
        );
        let caps = splunk.caps(&tight);
        assert!(
            caps.max_events < 100 && caps.max_bytes >= 10_000,
            "{caps:?}"
        );
        for preset in [Preset::Datadog, Preset::SumoLogic, splunk] {
            worst_case_fits(&preset, &tight);
        }
    }
}
