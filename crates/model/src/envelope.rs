//! The ingest envelope and its validation.
//!
//! A producer sends `{"id", "event_type", "occurred_at", "org_id", "workspace_id", "data"}`.
//! Validation either yields a [`ValidatedEvent`] whose `body` is exactly the bytes to store,
//! or one [`ItemError`] naming the field, a stable code and a readable reason. Checks run
//! cheapest first (size, UTF-8, nesting) so hostile input is refused before it is parsed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    ActivityCatalog, EventType, Limits, LogLevel,
    catalog::Lookup,
    ids::{new_event_id, validate_id},
};

/// The envelope's fields, in the order errors are reported.
const FIELDS: [&str; 6] = [
    "id",
    "event_type",
    "occurred_at",
    "org_id",
    "workspace_id",
    "data",
];

/// An event that passed validation, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedEvent {
    /// The producer's id, or a UUIDv7 assigned here.
    pub id: String,
    /// True when `id` was assigned by Auditstream (a retry of the request would then store
    /// the event again; producers that need exactly-once storage send their own ids).
    pub id_assigned: bool,
    pub event_type: EventType,
    /// Exactly as sent; already checked to be RFC 3339.
    pub occurred_at: String,
    pub org_id: String,
    pub workspace_id: String,
    /// The envelope's JSON bytes as they will be stored. Over HTTP these are the producer's
    /// bytes unchanged; over gRPC they are built from the fields with `data` kept verbatim.
    pub body: Vec<u8>,
}

/// Why one item was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemError {
    /// JSON path of the offending field (`data.category`); empty for the whole item.
    pub field: String,
    pub code: ItemErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemErrorCode {
    MalformedJson,
    InvalidUtf8,
    WrongType,
    MissingField,
    UnknownField,
    UnknownEventType,
    UnknownActivityCategory,
    UnknownActivityAction,
    InvalidLogLevel,
    InvalidId,
    InvalidTimestamp,
    TooDeep,
    EventTooLarge,
    /// The producer token is not allowed to send events for this organization.
    OrgNotAllowed,
}

impl ItemErrorCode {
    /// The code's wire name, also used as the `reason` label of rejection metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemErrorCode::MalformedJson => "malformed_json",
            ItemErrorCode::InvalidUtf8 => "invalid_utf8",
            ItemErrorCode::WrongType => "wrong_type",
            ItemErrorCode::MissingField => "missing_field",
            ItemErrorCode::UnknownField => "unknown_field",
            ItemErrorCode::UnknownEventType => "unknown_event_type",
            ItemErrorCode::UnknownActivityCategory => "unknown_activity_category",
            ItemErrorCode::UnknownActivityAction => "unknown_activity_action",
            ItemErrorCode::InvalidLogLevel => "invalid_log_level",
            ItemErrorCode::InvalidId => "invalid_id",
            ItemErrorCode::InvalidTimestamp => "invalid_timestamp",
            ItemErrorCode::TooDeep => "too_deep",
            ItemErrorCode::EventTooLarge => "event_too_large",
            ItemErrorCode::OrgNotAllowed => "org_not_allowed",
        }
    }
}

impl ItemError {
    pub fn new(field: impl Into<String>, code: ItemErrorCode, message: impl Into<String>) -> Self {
        ItemError {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// The envelope as typed fields, for transports that are not JSON (gRPC).
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// Empty means "assign one".
    pub id: &'a str,
    pub event_type: &'a str,
    pub occurred_at: &'a str,
    pub org_id: &'a str,
    pub workspace_id: &'a str,
    pub data_json: &'a [u8],
}

/// Validates one JSON envelope. `raw` is the item's bytes (one NDJSON line or one array
/// element); they become the stored body unchanged, apart from surrounding whitespace.
pub fn validate_envelope(raw: &[u8], limits: &Limits) -> Result<ValidatedEvent, ItemError> {
    let raw = raw.trim_ascii();
    check_size(raw.len(), limits)?;
    let text = std::str::from_utf8(raw).map_err(|e| {
        ItemError::new(
            "",
            ItemErrorCode::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    check_depth(raw, limits.max_depth, "")?;
    let map: HashMap<String, &RawValue> = serde_json::from_str(text).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            ItemError::new(
                "",
                ItemErrorCode::WrongType,
                "the event must be a JSON object",
            )
        } else {
            ItemError::new(
                "",
                ItemErrorCode::MalformedJson,
                format!("malformed JSON: {e}"),
            )
        }
    })?;
    let mut unknown: Vec<&String> = map
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(ItemError::new(
            unknown[0].as_str(),
            ItemErrorCode::UnknownField,
            format!(
                "unknown field {:?}; the envelope has only {}",
                unknown[0],
                FIELDS.join(", ")
            ),
        ));
    }
    let id = optional_string(&map, "id")?;
    let event_type = required_string(&map, "event_type")?;
    let occurred_at = required_string(&map, "occurred_at")?;
    let org_id = required_string(&map, "org_id")?;
    let workspace_id = required_string(&map, "workspace_id")?;
    let data = map.get("data").ok_or_else(|| missing("data"))?;
    if json_kind(data) != "an object" {
        return Err(ItemError::new(
            "data",
            ItemErrorCode::WrongType,
            format!("expected an object, got {}", json_kind(data)),
        ));
    }
    let checked = check_fields(
        id.as_deref(),
        &event_type,
        &occurred_at,
        &org_id,
        &workspace_id,
        data,
    )?;
    Ok(ValidatedEvent {
        id: checked.id,
        id_assigned: checked.id_assigned,
        event_type: checked.event_type,
        occurred_at,
        org_id,
        workspace_id,
        body: raw.to_vec(),
    })
}

/// Validates an envelope given as typed fields and builds its JSON body, keeping
/// `data_json` byte for byte.
pub fn validate_parts(parts: Parts<'_>, limits: &Limits) -> Result<ValidatedEvent, ItemError> {
    let data_text = std::str::from_utf8(parts.data_json).map_err(|e| {
        ItemError::new(
            "data",
            ItemErrorCode::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    // The envelope adds one level around `data`.
    check_depth(parts.data_json, limits.max_depth.saturating_sub(1), "data")?;
    let data: &RawValue = serde_json::from_str(data_text.trim()).map_err(|e| {
        ItemError::new(
            "data",
            ItemErrorCode::MalformedJson,
            format!("malformed JSON: {e}"),
        )
    })?;
    if json_kind(data) != "an object" {
        return Err(ItemError::new(
            "data",
            ItemErrorCode::WrongType,
            format!("expected an object, got {}", json_kind(data)),
        ));
    }
    for (name, value) in [
        ("event_type", parts.event_type),
        ("occurred_at", parts.occurred_at),
        ("org_id", parts.org_id),
        ("workspace_id", parts.workspace_id),
    ] {
        if value.is_empty() {
            return Err(missing(name));
        }
    }
    let id = (!parts.id.is_empty()).then_some(parts.id);
    let checked = check_fields(
        id,
        parts.event_type,
        parts.occurred_at,
        parts.org_id,
        parts.workspace_id,
        data,
    )?;
    let body = compose_body(id, &parts, data.get());
    check_size(body.len(), limits)?;
    Ok(ValidatedEvent {
        id: checked.id,
        id_assigned: checked.id_assigned,
        event_type: checked.event_type,
        occurred_at: parts.occurred_at.to_owned(),
        org_id: parts.org_id.to_owned(),
        workspace_id: parts.workspace_id.to_owned(),
        body,
    })
}

fn compose_body(id: Option<&str>, parts: &Parts<'_>, data: &str) -> Vec<u8> {
    let quote = |s: &str| serde_json::to_string(s).expect("strings always serialize");
    let mut out = String::with_capacity(data.len() + 192);
    out.push('{');
    if let Some(id) = id {
        out.push_str(&format!("\"id\":{},", quote(id)));
    }
    out.push_str(&format!(
        "\"event_type\":{},\"occurred_at\":{},\"org_id\":{},\"workspace_id\":{},\"data\":",
        quote(parts.event_type),
        quote(parts.occurred_at),
        quote(parts.org_id),
        quote(parts.workspace_id),
    ));
    out.push_str(data);
    out.push('}');
    out.into_bytes()
}

struct Checked {
    id: String,
    id_assigned: bool,
    event_type: EventType,
}

/// The checks shared by both transports, once each field is a string.
fn check_fields(
    id: Option<&str>,
    event_type: &str,
    occurred_at: &str,
    org_id: &str,
    workspace_id: &str,
    data: &RawValue,
) -> Result<Checked, ItemError> {
    if let Some(id) = id {
        check_id("id", id)?;
    }
    let event_type: EventType =
        event_type
            .parse()
            .map_err(|e: crate::event_type::UnknownEventType| {
                ItemError::new("event_type", ItemErrorCode::UnknownEventType, e.to_string())
            })?;
    time::OffsetDateTime::parse(occurred_at, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            ItemError::new(
                "occurred_at",
                ItemErrorCode::InvalidTimestamp,
                format!("{occurred_at:?} is not an RFC 3339 timestamp (e.g. 2026-11-21T10:15:02.120Z): {e}"),
            )
        })?;
    check_id("org_id", org_id)?;
    check_id("workspace_id", workspace_id)?;
    match event_type {
        EventType::UserActivity => check_activity(data)?,
        EventType::LogEvent => check_log_event(data)?,
        _ => {}
    }
    Ok(Checked {
        id: id.map_or_else(new_event_id, str::to_owned),
        id_assigned: id.is_none(),
        event_type,
    })
}

fn check_id(field: &str, value: &str) -> Result<(), ItemError> {
    validate_id(value).map_err(|e| {
        ItemError::new(
            field,
            ItemErrorCode::InvalidId,
            format!("{field} {value:?} {e}"),
        )
    })
}

/// The fields of `data` that the model gives meaning to; everything else is the platform's.
#[derive(Deserialize)]
struct DataFields<'a> {
    #[serde(borrow)]
    category: Option<&'a RawValue>,
    #[serde(borrow)]
    action: Option<&'a RawValue>,
    #[serde(borrow)]
    log_type: Option<&'a RawValue>,
    #[serde(borrow)]
    level: Option<&'a RawValue>,
}

fn data_fields(data: &RawValue) -> Result<DataFields<'_>, ItemError> {
    serde_json::from_str(data.get()).map_err(|e| {
        ItemError::new(
            "data",
            ItemErrorCode::MalformedJson,
            format!("malformed JSON: {e}"),
        )
    })
}

fn check_activity(data: &RawValue) -> Result<(), ItemError> {
    let fields = data_fields(data)?;
    let category = data_string(fields.category, "data.category")?;
    let action = data_string(fields.action, "data.action")?;
    let catalog = ActivityCatalog::get();
    match catalog.lookup(&category, &action) {
        Lookup::Known(_) => Ok(()),
        Lookup::UnknownCategory => Err(ItemError::new(
            "data.category",
            ItemErrorCode::UnknownActivityCategory,
            format!(
                "unknown activity category {category:?}; the catalog has {}",
                catalog.category_keys()
            ),
        )),
        Lookup::UnknownAction(c) => Err(ItemError::new(
            "data.action",
            ItemErrorCode::UnknownActivityAction,
            format!(
                "unknown action {action:?} in activity category {category:?}; it has {}",
                c.action_keys()
            ),
        )),
    }
}

fn check_log_event(data: &RawValue) -> Result<(), ItemError> {
    let fields = data_fields(data)?;
    let log_type = data_string(fields.log_type, "data.log_type")?;
    if log_type.is_empty() || log_type.len() > 64 {
        return Err(ItemError::new(
            "data.log_type",
            ItemErrorCode::WrongType,
            "log_type must be a non-empty string of at most 64 characters",
        ));
    }
    let level = data_string(fields.level, "data.level")?;
    level.parse::<LogLevel>().map_err(|()| {
        ItemError::new(
            "data.level",
            ItemErrorCode::InvalidLogLevel,
            format!(
                "unknown log level {level:?}; expected one of {}",
                LogLevel::NAMES
            ),
        )
    })?;
    Ok(())
}

fn data_string(value: Option<&RawValue>, field: &str) -> Result<String, ItemError> {
    let value = value.ok_or_else(|| missing(field))?;
    as_string(value, field)
}

fn optional_string(
    map: &HashMap<String, &RawValue>,
    field: &str,
) -> Result<Option<String>, ItemError> {
    match map.get(field) {
        None => Ok(None),
        Some(v) if v.get() == "null" => Ok(None),
        Some(v) => as_string(v, field).map(Some),
    }
}

fn required_string(map: &HashMap<String, &RawValue>, field: &str) -> Result<String, ItemError> {
    let value = map.get(field).ok_or_else(|| missing(field))?;
    as_string(value, field)
}

fn as_string(value: &RawValue, field: &str) -> Result<String, ItemError> {
    serde_json::from_str::<String>(value.get()).map_err(|_| {
        ItemError::new(
            field,
            ItemErrorCode::WrongType,
            format!("expected a string, got {}", json_kind(value)),
        )
    })
}

fn missing(field: &str) -> ItemError {
    ItemError::new(
        field,
        ItemErrorCode::MissingField,
        format!("missing required field {field}"),
    )
}

/// The JSON type of a value, for messages.
fn json_kind(value: &RawValue) -> &'static str {
    match value.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn check_size(len: usize, limits: &Limits) -> Result<(), ItemError> {
    if len > limits.max_event_bytes {
        return Err(ItemError::new(
            "",
            ItemErrorCode::EventTooLarge,
            format!(
                "event is {len} bytes; the limit is {} bytes (limits.max_event_bytes)",
                limits.max_event_bytes
            ),
        ));
    }
    Ok(())
}

fn check_depth(raw: &[u8], max: usize, field: &str) -> Result<(), ItemError> {
    if exceeds_depth(raw, max) {
        return Err(ItemError::new(
            field,
            ItemErrorCode::TooDeep,
            format!("objects and arrays are nested deeper than {max} levels (limits.max_depth)"),
        ));
    }
    Ok(())
}

/// True when `raw` nests objects/arrays deeper than `max`. A byte scan that skips strings:
/// it runs before parsing so a deeply nested payload never reaches the recursive parser.
pub fn exceeds_depth(raw: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"id":"e-1","event_type":"job_status","occurred_at":"2026-11-21T10:15:02.120Z","org_id":"org-1","workspace_id":"ws-1","data":{"status":"ok"}}"#;

    fn limits() -> Limits {
        Limits::default()
    }

    fn err(raw: &str) -> ItemError {
        validate_envelope(raw.as_bytes(), &limits()).unwrap_err()
    }

    fn with(field: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(OK).unwrap();
        v[field] = serde_json::from_str(value).unwrap();
        v.to_string()
    }

    #[test]
    fn valid_envelope_keeps_its_bytes() {
        let raw = format!("  {OK}\r\n");
        let ev = validate_envelope(raw.as_bytes(), &limits()).unwrap();
        assert_eq!(ev.body, OK.as_bytes());
        assert_eq!(ev.id, "e-1");
        assert!(!ev.id_assigned);
        assert_eq!(ev.event_type, EventType::JobStatus);
        assert_eq!(ev.org_id, "org-1");
    }

    #[test]
    fn missing_id_gets_a_uuid_v7_and_body_is_untouched() {
        let mut v: serde_json::Value = serde_json::from_str(OK).unwrap();
        v.as_object_mut().unwrap().remove("id");
        let raw = v.to_string();
        let ev = validate_envelope(raw.as_bytes(), &limits()).unwrap();
        assert!(ev.id_assigned);
        assert_eq!(uuid::Uuid::parse_str(&ev.id).unwrap().get_version_num(), 7);
        assert_eq!(ev.body, raw.as_bytes());
    }

    #[test]
    fn each_bad_field_names_itself() {
        let cases = [
            (with("org_id", "17"), "org_id", ItemErrorCode::WrongType),
            (
                with("event_type", r#""job""#),
                "event_type",
                ItemErrorCode::UnknownEventType,
            ),
            (
                with("workspace_id", r#""ws.1""#),
                "workspace_id",
                ItemErrorCode::InvalidId,
            ),
            (with("id", r#""a>b""#), "id", ItemErrorCode::InvalidId),
            (
                with("occurred_at", r#""2026-11-21 10:15""#),
                "occurred_at",
                ItemErrorCode::InvalidTimestamp,
            ),
            (with("data", "[1]"), "data", ItemErrorCode::WrongType),
            (with("extra", "1"), "extra", ItemErrorCode::UnknownField),
        ];
        for (raw, field, code) in cases {
            let e = err(&raw);
            assert_eq!((e.field.as_str(), e.code), (field, code), "{raw}: {e:?}");
        }
        let mut v: serde_json::Value = serde_json::from_str(OK).unwrap();
        v.as_object_mut().unwrap().remove("workspace_id");
        let e = err(&v.to_string());
        assert_eq!(
            (e.field.as_str(), e.code),
            ("workspace_id", ItemErrorCode::MissingField)
        );
        assert_eq!(e.message, "missing required field workspace_id");
    }

    #[test]
    fn whole_item_problems() {
        assert_eq!(err("{\"id\":").code, ItemErrorCode::MalformedJson);
        assert_eq!(err("[1,2]").code, ItemErrorCode::WrongType);
        let bad_utf8 = [OK.as_bytes(), b"\xff"].concat();
        let e = validate_envelope(&bad_utf8, &limits()).unwrap_err();
        assert_eq!(e.code, ItemErrorCode::InvalidUtf8);
        assert_eq!(e.message, format!("invalid UTF-8 at byte {}", OK.len()));
    }

    #[test]
    fn activity_must_be_in_the_catalog() {
        let activity = |cat: &str, act: &str| {
            with(
                "data",
                &format!(r#"{{"category":"{cat}","action":"{act}"}}"#),
            )
            .replace("job_status", "user_activity")
        };
        assert!(validate_envelope(activity("recipe", "stopped").as_bytes(), &limits()).is_ok());
        let e = err(&activity("nope", "stopped"));
        assert_eq!(
            (e.field.as_str(), e.code),
            ("data.category", ItemErrorCode::UnknownActivityCategory)
        );
        let e = err(&activity("recipe", "nope"));
        assert_eq!(
            (e.field.as_str(), e.code),
            ("data.action", ItemErrorCode::UnknownActivityAction)
        );
        assert!(e.message.contains("stopped"), "{}", e.message);
        let e =
            err(&with("data", r#"{"action":"stopped"}"#).replace("job_status", "user_activity"));
        assert_eq!(
            (e.field.as_str(), e.code),
            ("data.category", ItemErrorCode::MissingField)
        );
    }

    #[test]
    fn log_events_need_type_and_level() {
        let log = |data: &str| with("data", data).replace("job_status", "log_event");
        assert!(
            validate_envelope(
                log(r#"{"log_type":"recipe","level":"warning"}"#).as_bytes(),
                &limits()
            )
            .is_ok()
        );
        let e = err(&log(r#"{"log_type":"recipe","level":"loud"}"#));
        assert_eq!(
            (e.field.as_str(), e.code),
            ("data.level", ItemErrorCode::InvalidLogLevel)
        );
        let e = err(&log(r#"{"level":"info"}"#));
        assert_eq!(
            (e.field.as_str(), e.code),
            ("data.log_type", ItemErrorCode::MissingField)
        );
    }

    #[test]
    fn nesting_and_size_limits() {
        let limits = Limits {
            max_depth: 4,
            max_event_bytes: 400,
            ..Limits::default()
        };
        // envelope(1) > data(2) > a(3) > b(4): allowed; one more level is not.
        let ok = with("data", r#"{"a":{"b":[]}}"#);
        assert!(validate_envelope(ok.as_bytes(), &limits).is_ok());
        let deep = with("data", r#"{"a":{"b":[[]]}}"#);
        assert_eq!(
            validate_envelope(deep.as_bytes(), &limits)
                .unwrap_err()
                .code,
            ItemErrorCode::TooDeep
        );
        // Brackets inside strings do not count.
        let quoted = with("data", r#"{"a":"[[[[[[[[\"{{{{"}"#);
        assert!(validate_envelope(quoted.as_bytes(), &limits).is_ok());
        let big = with("data", &format!(r#"{{"a":"{}"}}"#, "x".repeat(400)));
        let e = validate_envelope(big.as_bytes(), &limits).unwrap_err();
        assert_eq!(e.code, ItemErrorCode::EventTooLarge);
        assert!(e.message.contains("limit is 400 bytes"), "{}", e.message);
    }

    #[test]
    fn parts_build_the_same_envelope() {
        let data = br#"{"status":"ok"}"#;
        let parts = Parts {
            id: "e-1",
            event_type: "job_status",
            occurred_at: "2026-11-21T10:15:02.120Z",
            org_id: "org-1",
            workspace_id: "ws-1",
            data_json: data,
        };
        let ev = validate_parts(parts, &limits()).unwrap();
        assert_eq!(ev.body, OK.as_bytes());
        let from_json = validate_envelope(OK.as_bytes(), &limits()).unwrap();
        assert_eq!(ev, from_json);

        let e = validate_parts(
            Parts {
                org_id: "",
                ..parts
            },
            &limits(),
        )
        .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.code),
            ("org_id", ItemErrorCode::MissingField)
        );
        let e = validate_parts(
            Parts {
                data_json: b"{\"a\":",
                ..parts
            },
            &limits(),
        )
        .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.code),
            ("data", ItemErrorCode::MalformedJson)
        );
        let e = validate_parts(
            Parts {
                data_json: b"\"s\"",
                ..parts
            },
            &limits(),
        )
        .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.code),
            ("data", ItemErrorCode::WrongType)
        );
        let e = validate_parts(
            Parts {
                data_json: b"{\"a\":\"\xff\"}",
                ..parts
            },
            &limits(),
        )
        .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.code),
            ("data", ItemErrorCode::InvalidUtf8)
        );
        let no_id = validate_parts(Parts { id: "", ..parts }, &limits()).unwrap();
        assert!(no_id.id_assigned);
        assert!(!String::from_utf8(no_id.body).unwrap().contains("\"id\""));
    }
}
