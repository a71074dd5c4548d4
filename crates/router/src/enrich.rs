//! Enrichment (DESIGN §4) without re-encoding the event.
//!
//! Only the keys Auditstream adds or changes are touched (`context`, `user`, `team`, `lines`
//! and `audit`); every other value is copied as the producer's exact bytes, so huge numbers,
//! escapes and key order survive. The top level and the touched objects are read as ordered
//! `(key, raw JSON)` lists.

use std::{borrow::Cow, fmt};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use auditstream_model::EventType;

/// An object's members in document order, values as raw JSON.
pub struct RawObject<'a>(pub Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                    members.push((k, v));
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'a> RawObject<'a> {
    pub fn parse(json: &'a str) -> Result<RawObject<'a>, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Who the event is about, from the directory: the customer account the workspace belongs
/// to. That is the nearest `customer` node at or above the workspace; where there is none (a
/// workspace directly under an organization, or a partner's own admin workspace) the
/// workspace's own node is the account. The directory decides, not the producer: a
/// producer of one customer cannot label its events as another customer's in a partner's
/// shared destination.
#[derive(Debug, Clone, Copy)]
pub struct Account<'a> {
    pub id: &'a str,
    pub external_id: Option<&'a str>,
}

/// The `audit` object every log message carries.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct AuditMeta<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub occurred_at: &'a str,
    pub received_at: &'a str,
    pub org_id: &'a str,
    pub workspace_id: &'a str,
}

/// The log message (`data`, enriched, plus `audit`), in its two forms: with step details and,
/// for `job_details`, without (`lines` removed). Built once per event, shared by its streams.
pub struct LogMessage {
    pub full: Vec<u8>,
    /// Set only for job details, whose streams may exclude step data.
    pub without_steps: Option<Vec<u8>>,
}

pub fn log_message(
    event_type: EventType,
    data: &str,
    account: Account<'_>,
    audit: &AuditMeta<'_>,
) -> Result<LogMessage, serde_json::Error> {
    let top = RawObject::parse(data)?;
    // Untouched values are borrowed from the event; only the touched objects are rebuilt.
    let mut members: Vec<(&str, Cow<'_, str>)> = Vec::with_capacity(top.0.len() + 1);
    for (k, v) in &top.0 {
        let replaced = match (event_type, k.as_str()) {
            (_, "audit") => true, // Ours replaces anything a producer sent under that name.
            (EventType::JobStatus | EventType::JobDetails, "context") => true,
            (EventType::UserActivity, "user" | "team") => true,
            _ => false,
        };
        if !replaced {
            members.push((k.as_str(), Cow::Borrowed(v.get())));
        }
    }
    match event_type {
        EventType::JobStatus | EventType::JobDetails => {
            let context = object(top.get("context"))?;
            let merged = merge(
                &context,
                &[
                    ("user_id", quote(account.id)),
                    ("user_external_id", opt(account.external_id)),
                ],
            );
            members.push(("context", Cow::Owned(merged)));
        }
        EventType::UserActivity => {
            // The acting team member comes with the event: its id and external id, each
            // null when the event has none (present, never missing).
            let user = object(top.get("user"))?;
            let given = |key: &str| {
                user.iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map_or_else(|| "null".to_owned(), |(_, v)| v.get().to_owned())
            };
            let (user_id, external) = (given("id"), given("external_id"));
            members.push((
                "user",
                Cow::Owned(merge(&user, &[("id", user_id), ("external_id", external)])),
            ));
            // The team is the customer account, from the directory.
            let team = object(top.get("team"))?;
            members.push((
                "team",
                Cow::Owned(merge(
                    &team,
                    &[
                        ("id", quote(account.id)),
                        ("external_id", opt(account.external_id)),
                    ],
                )),
            ));
        }
        _ => {}
    }
    members.push(("audit", Cow::Owned(serde_json::to_string(audit)?)));
    let full = encode(members.iter().map(|(k, v)| (*k, v.as_ref())));
    let without_steps = (event_type == EventType::JobDetails).then(|| {
        encode(
            members
                .iter()
                .filter(|(k, _)| *k != "lines")
                .map(|(k, v)| (*k, v.as_ref())),
        )
    });
    Ok(LogMessage {
        full,
        without_steps,
    })
}

/// The members of `value` if it is an object (parsed once), else none.
fn object(value: Option<&RawValue>) -> Result<Vec<(String, &RawValue)>, serde_json::Error> {
    match value {
        Some(v) if v.get().trim_start().starts_with('{') => Ok(RawObject::parse(v.get())?.0),
        _ => Ok(Vec::new()),
    }
}

/// `members` with `set` replacing or appending, in place.
fn merge(members: &[(String, &RawValue)], set: &[(&str, String)]) -> String {
    let kept = members
        .iter()
        .filter(|(k, _)| !set.iter().any(|(s, _)| s == k))
        .map(|(k, v)| (k.as_str(), v.get()));
    let added = set.iter().map(|(k, v)| (*k, v.as_str()));
    String::from_utf8(encode(kept.chain(added))).expect("JSON is UTF-8")
}

fn encode<'a>(members: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    for (i, (k, v)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(quote(k).as_bytes());
        out.push(b':');
        out.extend_from_slice(v.as_bytes());
    }
    out.push(b'}');
    out
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn opt(s: Option<&str>) -> String {
    s.map_or_else(|| "null".into(), quote)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const AUDIT: AuditMeta<'static> = AuditMeta {
        event_id: "e1",
        event_type: "job_status",
        occurred_at: "2026-11-21T10:15:02.120Z",
        received_at: "2026-11-21T10:15:03Z",
        org_id: "org",
        workspace_id: "c1",
    };

    fn run(t: EventType, data: &str, external: Option<&str>) -> Value {
        let m = log_message(
            t,
            data,
            Account {
                id: "c1",
                external_id: external,
            },
            &AUDIT,
        )
        .unwrap();
        serde_json::from_slice(&m.full).unwrap()
    }

    #[test]
    fn job_events_name_the_customer_account() {
        let v = run(
            EventType::JobStatus,
            r#"{"id":"j1","context":{"user_id":1234,"recipe_id":4}}"#,
            Some("INI-001"),
        );
        // The directory names the account, whatever the producer put there.
        assert_eq!(
            v["context"],
            json!({"user_id": "c1", "recipe_id": 4, "user_external_id": "INI-001"})
        );
        // Absent everywhere: the directory's id, and null (present, never missing).
        let v = run(EventType::JobStatus, r#"{"id":"j1"}"#, None);
        assert_eq!(
            v["context"],
            json!({"user_id": "c1", "user_external_id": null})
        );
    }

    #[test]
    fn user_activity_gets_user_and_team() {
        let data = r#"{"category":"recipe","action":"stopped","user":{"id":991,"name":"Dana","external_id":"emp-7"},"team":{"id":1234,"name":"C17"}}"#;
        let v = run(EventType::UserActivity, data, Some("INI-001"));
        assert_eq!(
            v["user"],
            json!({"id": 991, "name": "Dana", "external_id": "emp-7"})
        );
        assert_eq!(
            v["team"],
            json!({"id": "c1", "name": "C17", "external_id": "INI-001"})
        );
        let v = run(
            EventType::UserActivity,
            r#"{"category":"recipe","action":"stopped","user":{"id":991}}"#,
            None,
        );
        assert_eq!(v["user"], json!({"id": 991, "external_id": null}));
        assert_eq!(v["team"], json!({"id": "c1", "external_id": null}));
        // No user in the event: both of its ids null, never missing.
        let v = run(
            EventType::UserActivity,
            r#"{"category":"recipe","action":"stopped"}"#,
            None,
        );
        assert_eq!(v["user"], json!({"id": null, "external_id": null}));
    }

    #[test]
    fn other_bytes_are_kept_exactly_and_audit_is_added() {
        let data =
            r#"{"big":123456789012345678901234567890,"s":"a\"{{{now}}}\\","z":1,"audit":"forged"}"#;
        let m = log_message(
            EventType::ApiPlatform,
            data,
            Account {
                id: "c1",
                external_id: None,
            },
            &AUDIT,
        )
        .unwrap();
        let text = String::from_utf8(m.full).unwrap();
        assert!(text.starts_with(r#"{"big":123456789012345678901234567890,"s":"a\"{{{now}}}\\","z":1,"audit":{"event_id":"e1""#), "{text}");
        assert!(!text.contains("forged"));
        assert!(m.without_steps.is_none());
    }

    #[test]
    fn job_details_without_steps_drops_lines_only() {
        let data = r#"{"id":"j","lines":[{"a":1}],"error":"x"}"#;
        let m = log_message(
            EventType::JobDetails,
            data,
            Account {
                id: "c1",
                external_id: None,
            },
            &AUDIT,
        )
        .unwrap();
        let full: Value = serde_json::from_slice(&m.full).unwrap();
        let lean: Value = serde_json::from_slice(m.without_steps.as_ref().unwrap()).unwrap();
        assert_eq!(full["lines"], json!([{"a": 1}]));
        assert!(lean.get("lines").is_none());
        assert_eq!(lean["error"], "x");
    }
}
