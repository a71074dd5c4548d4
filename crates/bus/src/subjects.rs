//! Subject builders. Every token is checked against the ID rule, so no caller can build a
//! subject that reaches into another tenant's space (`.`, `*` and `>` never get through).

use auditstream_model::{EventType, IdError, SinkType, validate_id};

pub const INGEST_PREFIX: &str = "audit.ingest";
/// AUDIT_HISTORY: routed ingest messages under their ingest subject's tail
/// (`audit.history.<org>.<workspace>.<event_type>`, `audit.history.<org>.pack`).
pub const HISTORY_PREFIX: &str = "audit.history";
/// AUDIT_PARKED: `audit.parked.<org>.<workspace>.<event_type>`, one event per message.
pub const PARKED_PREFIX: &str = "audit.parked";
pub const DELIVER_PREFIX: &str = "audit.deliver";
pub const BACKLOG_PREFIX: &str = "audit.backlog";
pub const DLQ_PREFIX: &str = "audit.dlq";
pub const CONTROL_PREFIX: &str = "audit.ctl";
/// Config change events (AUDIT_CONTROL), one per revision, in order.
pub const CONFIG_CHANGES: &str = "audit.ctl.config";
/// Request-reply between config-service and sinks (list targets, test connection). Kept
/// outside AUDIT_CONTROL's `audit.ctl.>`: JetStream would otherwise capture each request
/// and answer it with a PubAck in place of the sink.
pub const RPC_PREFIX: &str = "audit.rpc";

/// A subject token that failed the ID rule, with the token's role for the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{role} {value:?} cannot be used in a subject: it {source}")]
pub struct SubjectError {
    pub role: &'static str,
    pub value: String,
    pub source: IdError,
}

fn token<'a>(role: &'static str, value: &'a str) -> Result<&'a str, SubjectError> {
    validate_id(value).map_err(|source| SubjectError {
        role,
        value: value.to_owned(),
        source,
    })?;
    Ok(value)
}

/// `audit.ingest.<org>.<workspace>.<event_type>`
pub fn ingest(
    org_id: &str,
    workspace_id: &str,
    event_type: EventType,
) -> Result<String, SubjectError> {
    Ok(format!(
        "{INGEST_PREFIX}.{}.{}.{event_type}",
        token("org_id", org_id)?,
        token("workspace_id", workspace_id)?
    ))
}

/// `audit.ingest.<org>.pack`: a pack of one organization's events (`crate::pack`). One
/// token shorter than [`ingest`], so the two never collide and `audit.ingest.<org>.>` still
/// names everything of one organization.
pub fn ingest_pack(org_id: &str) -> Result<String, SubjectError> {
    Ok(format!("{INGEST_PREFIX}.{}.pack", token("org_id", org_id)?))
}

/// The history subject of an ingest subject: `audit.ingest.<rest>` → `audit.history.<rest>`.
/// `None` for a subject outside `audit.ingest.`.
pub fn history_of(ingest_subject: &str) -> Option<String> {
    let rest = ingest_subject
        .strip_prefix(INGEST_PREFIX)?
        .strip_prefix('.')?;
    Some(format!("{HISTORY_PREFIX}.{rest}"))
}

/// `audit.parked.<org>.<workspace>.<event_type>`
pub fn parked(
    org_id: &str,
    workspace_id: &str,
    event_type: EventType,
) -> Result<String, SubjectError> {
    Ok(format!(
        "{PARKED_PREFIX}.{}.{}.{}",
        token("org_id", org_id)?,
        token("workspace_id", workspace_id)?,
        event_type.as_str()
    ))
}

/// The ingest subject of a parked event: `audit.parked.<rest>` → `audit.ingest.<rest>`.
pub fn unparked(parked_subject: &str) -> Option<String> {
    let rest = parked_subject
        .strip_prefix(PARKED_PREFIX)?
        .strip_prefix('.')?;
    Some(format!("{INGEST_PREFIX}.{rest}"))
}

/// The router's own dead letters (ingest messages or events that can never be routed),
/// per organization: `audit.dlq.router.<org>`. `router` is no sink type, so these never mix
/// with a stream's DLQ (`audit.dlq.<sink_type>.<stream>`).
pub fn router_dlq(org_id: &str) -> Result<String, SubjectError> {
    Ok(format!(
        "{DLQ_PREFIX}.{ROUTER_DLQ}.{}",
        token("org_id", org_id)?
    ))
}

/// The sink-type position of [`router_dlq`] subjects.
pub const ROUTER_DLQ: &str = "router";

/// `audit.deliver.<sink_type>.<stream_id>`
pub fn deliver(sink: SinkType, stream_id: &str) -> Result<String, SubjectError> {
    Ok(format!(
        "{DELIVER_PREFIX}.{sink}.{}",
        token("stream_id", stream_id)?
    ))
}

/// `audit.backlog.<sink_type>.<stream_id>`
pub fn backlog(sink: SinkType, stream_id: &str) -> Result<String, SubjectError> {
    Ok(format!(
        "{BACKLOG_PREFIX}.{sink}.{}",
        token("stream_id", stream_id)?
    ))
}

/// `audit.dlq.<sink_type>.<stream_id>`
pub fn dlq(sink: SinkType, stream_id: &str) -> Result<String, SubjectError> {
    Ok(format!(
        "{DLQ_PREFIX}.{sink}.{}",
        token("stream_id", stream_id)?
    ))
}

/// `audit.rpc.<sink_type>.<operation>`, answered by any replica of that sink type.
pub fn rpc(sink: SinkType, operation: &str) -> String {
    format!("{RPC_PREFIX}.{sink}.{operation}")
}

/// The filter a sink type's shared consumer uses: `audit.deliver.<sink_type>.>`.
pub fn deliver_filter(sink: SinkType) -> String {
    format!("{DELIVER_PREFIX}.{sink}.>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_documented_subjects() {
        assert_eq!(
            ingest("org-1", "ws_2", EventType::UserActivity).unwrap(),
            "audit.ingest.org-1.ws_2.user_activity"
        );
        assert_eq!(ingest_pack("org-1").unwrap(), "audit.ingest.org-1.pack");
        assert_eq!(
            history_of("audit.ingest.org-1.pack").as_deref(),
            Some("audit.history.org-1.pack")
        );
        assert_eq!(history_of("audit.ingestx.a"), None);
        assert_eq!(
            parked("org-1", "ws_2", EventType::UserActivity).unwrap(),
            "audit.parked.org-1.ws_2.user_activity"
        );
        assert_eq!(
            unparked("audit.parked.org-1.ws_2.user_activity").as_deref(),
            Some("audit.ingest.org-1.ws_2.user_activity")
        );
        assert!(parked("org-1", "ws.2", EventType::UserActivity).is_err());
        assert_eq!(router_dlq("org-1").unwrap(), "audit.dlq.router.org-1");
        assert!(ingest_pack("org.1").is_err());
        assert_eq!(
            deliver(SinkType::AzureBlob, "s9").unwrap(),
            "audit.deliver.azure_blob.s9"
        );
        assert_eq!(backlog(SinkType::S3, "s9").unwrap(), "audit.backlog.s3.s9");
        assert_eq!(dlq(SinkType::Http, "s9").unwrap(), "audit.dlq.http.s9");
        assert_eq!(
            deliver_filter(SinkType::AzureMonitor),
            "audit.deliver.azure_monitor.>"
        );
    }

    #[test]
    fn refuses_tokens_that_would_change_the_subject() {
        for bad in ["a.b", "*", ">", "a b", ""] {
            let err = ingest("org", bad, EventType::JobStatus).unwrap_err();
            assert_eq!(err.role, "workspace_id");
        }
        assert!(deliver(SinkType::Http, "s.>").is_err());
    }
}
