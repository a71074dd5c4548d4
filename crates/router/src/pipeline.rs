//! One event through the routing table: place, resolve, filter, enrich, render. Pure: no I/O,
//! so it is unit-tested and benchmarked on its own.

use auditstream_model::{EventType, LogLevel};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    enrich::{Account, AuditMeta, RawObject, log_message},
    table::RoutingTable,
};

/// An ingest message, as read from its headers and body.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub event_id: &'a str,
    /// The organization the gateway accepted the event for (its producer token's scope).
    pub org_id: &'a str,
    pub event_type: EventType,
    pub workspace_id: &'a str,
    pub occurred_at: &'a str,
    pub received_at: &'a str,
    /// The envelope's JSON (the gateway validated it).
    pub body: &'a [u8],
}

/// A message to publish on `subject` for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<'t> {
    pub stream_id: &'t str,
    pub subject: &'t str,
    pub body: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<'t> {
    Routed(Vec<Delivery<'t>>),
    /// The workspace has streams, but none selects this event (or none applies).
    NotWanted,
    /// Cannot be placed; acked and counted under this reason.
    Unroutable(&'static str),
}

#[derive(Deserialize)]
struct LogFields<'a> {
    #[serde(borrow)]
    log_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    level: Option<std::borrow::Cow<'a, str>>,
}

pub fn route<'t>(
    table: &'t RoutingTable,
    event: &Incoming<'_>,
    now: time::OffsetDateTime,
) -> Outcome<'t> {
    // The directory places the workspace. The organization the event was accepted for must
    // be the workspace's own: otherwise a producer of one organization could write into
    // another's streams.
    let Some(node) = table.nodes.get(event.workspace_id) else {
        return Outcome::Unroutable("unknown_workspace");
    };
    if node.org_id != event.org_id {
        return Outcome::Unroutable("org_mismatch");
    }
    let Some(effective) = table.tree.resolve(event.workspace_id) else {
        return Outcome::Unroutable("unknown_workspace");
    };
    // Most filtering needs only the event type: decide that before reading the body.
    let candidates: Vec<_> = effective
        .iter()
        .filter_map(|scope| table.streams.get(&scope.id))
        .filter(|s| s.wants_type(event.event_type))
        .collect();
    if candidates.is_empty() {
        return Outcome::NotWanted;
    }
    let Ok(text) = std::str::from_utf8(event.body) else {
        return Outcome::Unroutable("malformed");
    };
    let Some(data) = RawObject::parse(text).ok().and_then(|o| o.get("data")) else {
        return Outcome::Unroutable("malformed");
    };
    let log = match event.event_type {
        EventType::LogEvent => match serde_json::from_str::<LogFields<'_>>(data.get()) {
            Ok(f) => Some(f),
            Err(_) => return Outcome::Unroutable("malformed"),
        },
        _ => None,
    };
    let log_key = log.as_ref().map(|f| {
        (
            f.log_type.as_deref().unwrap_or_default(),
            f.level.as_deref().and_then(|l| l.parse::<LogLevel>().ok()),
        )
    });
    let selected: Vec<_> = candidates
        .into_iter()
        .filter(|s| s.wants(event.event_type, log_key))
        .collect();
    if selected.is_empty() {
        return Outcome::NotWanted;
    }
    let audit = AuditMeta {
        event_id: event.event_id,
        event_type: event.event_type.as_str(),
        occurred_at: event.occurred_at,
        received_at: event.received_at,
        org_id: &node.org_id,
        workspace_id: event.workspace_id,
    };
    let account = Account {
        id: &node.account_id,
        external_id: node.account_external_id.as_deref(),
    };
    let message = match log_message(event.event_type, data_str(data), account, &audit) {
        Ok(m) => m,
        Err(_) => return Outcome::Unroutable("malformed"),
    };
    let deliveries = selected
        .into_iter()
        .map(|stream| {
            let source = match (&message.without_steps, stream.include_step_details) {
                (Some(lean), false) => lean,
                _ => &message.full,
            };
            let body = match &stream.template {
                Some(t) => t.render(source, now),
                None => source.clone(),
            };
            Delivery {
                stream_id: &stream.id,
                subject: &stream.subject,
                body,
            }
        })
        .collect();
    Outcome::Routed(deliveries)
}

fn data_str(data: &RawValue) -> &str {
    data.get()
}
