//! Self-audit: changes to streaming settings are themselves `user_activity` events
//! (category `account`), built here and published through the same pipeline as any other
//! event (via the outbox, so a NATS outage delays them but never loses them).

use auditstream_proto::v1::Stream;
use serde_json::json;

use crate::{authz::Principal, store::World};

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("current time formats as RFC 3339")
}

/// Streaming switched on or off (also on create and delete of an enabled stream).
pub fn streaming_toggled(world: &World, p: &Principal, stream: &Stream, enabled: bool) -> Vec<u8> {
    envelope(
        world,
        p,
        stream,
        "audit_log_streaming",
        json!({ "enabled": enabled }),
    )
}

/// A stream deleted: streaming switched off if it was on, and, when undelivered events were
/// discarded with it (`(backlog, dead letters)`), how many, so the loss is on record.
pub fn stream_deleted(
    world: &World,
    p: &Principal,
    stream: &Stream,
    (backlog, dead_letters): (u64, u64),
) -> Vec<Vec<u8>> {
    if backlog + dead_letters == 0 && !stream.enabled {
        return vec![];
    }
    vec![envelope(
        world,
        p,
        stream,
        "audit_log_streaming",
        json!({
            "enabled": false,
            "deleted": true,
            "discarded_backlog_events": backlog,
            "discarded_dead_letters": dead_letters,
        }),
    )]
}

/// The destination (target, or the credentials of its connection) changed.
pub fn destination_updated(world: &World, p: &Principal, stream: &Stream) -> Vec<u8> {
    let connection_id = stream
        .destination
        .as_ref()
        .map(|d| d.connection_id.as_str())
        .unwrap_or_default();
    envelope(
        world,
        p,
        stream,
        "audit_log_streaming_destination_updated",
        json!({ "connection_id": connection_id }),
    )
}

/// The audit events an update of a stream calls for.
pub fn stream_changes(world: &World, p: &Principal, old: &Stream, new: &Stream) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if old.enabled != new.enabled {
        out.push(streaming_toggled(world, p, new, new.enabled));
    }
    if old.selection != new.selection {
        let selection = new.selection.as_ref().map(|s| {
            json!({
                "event_types": s.event_types,
                "include_step_details": s.include_step_details,
                "log_types": s.log_types,
                "log_levels": s.log_levels,
            })
        });
        out.push(envelope(
            world,
            p,
            new,
            "audit_log_streaming_data_inclusion",
            json!({ "selection": selection }),
        ));
    }
    if old.destination != new.destination {
        out.push(destination_updated(world, p, new));
    }
    out
}

fn envelope(
    world: &World,
    p: &Principal,
    stream: &Stream,
    action: &str,
    details: serde_json::Value,
) -> Vec<u8> {
    let org_id = world
        .tree
        .path(&stream.node_id)
        .and_then(|path| path.first().map(|root| root.id.clone()))
        .unwrap_or_else(|| stream.node_id.clone());
    let event = json!({
        "id": auditstream_model::new_event_id(),
        "event_type": "user_activity",
        "occurred_at": now_rfc3339(),
        "org_id": org_id,
        "workspace_id": stream.node_id,
        "data": {
            "category": "account",
            "action": action,
            "user": { "id": p.name, "external_id": null, "role": p.role_name() },
            "resource": { "type": "audit_log_stream", "id": stream.id, "name": stream.name },
            "details": details,
        },
    });
    serde_json::to_vec(&event).expect("JSON values serialize")
}
