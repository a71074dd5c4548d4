//! `auditctl router-dlq list|replay`: the router's dead letters (`audit.dlq.router.<org>` in
//! AUDIT_DLQ: events of workspaces that never appeared, unreadable or unknown packs,
//! deliveries too large for NATS). They belong to no stream, so the config service's
//! ListDeadLetters does not see them; this reads them from JetStream (direct get, by
//! sequence) with the config service's NATS user, as `topology apply` does.
//!
//! A replay republishes each dead letter to its ingest subject (a pack back as a pack) with
//! `Nats-Msg-Id = dl-replay.<DLQ sequence>` (stable, so an interrupted replay repeated stores
//! each once), and deletes it from the DLQ only after the PubAck. The router then routes it
//! as if it had just arrived.

use std::io::Write;

use async_nats::jetstream::{self, message::StreamMessage, stream::DirectGetErrorKind};
use auditstream_bus::{
    NatsConfig, connect, headers, jetstream_context, pack, publish_durable, subjects, topology,
};
use serde::{Deserialize, Serialize};

use crate::{CliError, args::RouterDlqArgs};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct NatsFile {
    nats: NatsConfig,
}

/// One dead letter, as `list --json` prints it.
#[derive(Debug, Serialize)]
struct Letter {
    sequence: u64,
    org_id: String,
    event_id: String,
    workspace_id: String,
    /// `reason: detail`, as the router wrote it.
    error: String,
    time: String,
}

async fn open(
    args: &RouterDlqArgs,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(NatsConfig, jetstream::Context), CliError> {
    let mut nats = auditstream_telemetry::load::<NatsFile>(args.config.as_deref(), env)
        .map_err(|e| CliError::Input(e.to_string()))?
        .config
        .nats;
    if let Some(url) = &args.nats_url {
        nats.url.clone_from(url);
    }
    let client = connect(&nats, auditstream_bus::Service::ConfigService)
        .await
        .map_err(|e| {
            CliError::Topology(format!("cannot reach NATS at {}: {e}", nats.redacted_url()))
        })?;
    let js = jetstream_context(client, nats.publish_timeout);
    Ok((nats, js))
}

/// The subject filter: one organization's, or every organization's.
fn filter(org: Option<&str>) -> Result<String, CliError> {
    match org {
        Some(org) => subjects::router_dlq(org).map_err(|e| CliError::Input(e.to_string())),
        None => Ok(format!(
            "{}.{}.>",
            subjects::DLQ_PREFIX,
            subjects::ROUTER_DLQ
        )),
    }
}

/// Up to `limit` dead letters under `filter`, oldest first.
async fn read(
    js: &jetstream::Context,
    filter: &str,
    limit: usize,
) -> Result<Vec<StreamMessage>, CliError> {
    let failed =
        |e: &dyn std::fmt::Display| CliError::Topology(format!("cannot read AUDIT_DLQ: {e}"));
    let stream = js
        .get_stream_no_info(topology::DLQ)
        .await
        .map_err(|e| failed(&e))?;
    let mut out = Vec::new();
    let mut next = None;
    while out.len() < limit {
        match stream.direct_get_next_for_subject(filter, next).await {
            Ok(m) => {
                next = Some(m.sequence + 1);
                out.push(m);
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
            Err(e) => return Err(failed(&e)),
        }
    }
    Ok(out)
}

fn header(m: &StreamMessage, name: &str) -> String {
    m.headers
        .get(name)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

/// `auditctl router-dlq list`.
pub async fn list(
    args: &RouterDlqArgs,
    env: impl IntoIterator<Item = (String, String)>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let (_, js) = open(args, env).await?;
    let letters: Vec<Letter> = read(&js, &filter(args.org.as_deref())?, args.limit)
        .await?
        .iter()
        .map(|m| Letter {
            sequence: m.sequence,
            org_id: m.subject.split('.').nth(3).unwrap_or_default().to_owned(),
            event_id: header(m, headers::EVENT_ID),
            workspace_id: header(m, headers::WORKSPACE_ID),
            error: header(m, headers::ERROR),
            time: m
                .time
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        })
        .collect();
    if json {
        serde_json::to_writer_pretty(&mut *out, &letters).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else if letters.is_empty() {
        writeln!(out, "no router dead letters")?;
    } else {
        for l in &letters {
            let event = if l.event_id.is_empty() {
                "(pack)"
            } else {
                &l.event_id
            };
            writeln!(
                out,
                "{:>8}  {}  {:<16} {:<16} {:<36} {}",
                l.sequence, l.time, l.org_id, l.workspace_id, event, l.error
            )?;
        }
    }
    Ok(())
}

/// The ingest subject a dead letter goes back to: a pack to its organization's pack
/// subject, an event to its own.
fn ingest_subject(m: &StreamMessage, org: &str) -> Result<String, String> {
    // Any pack header, of any version: a pack goes back as it came.
    if m.headers.get(pack::PACK).is_some() {
        return subjects::ingest_pack(org).map_err(|e| e.to_string());
    }
    let event_type = header(m, headers::EVENT_TYPE)
        .parse()
        .map_err(|_| "no event type".to_owned())?;
    subjects::ingest(org, &header(m, headers::WORKSPACE_ID), event_type).map_err(|e| e.to_string())
}

/// `auditctl router-dlq replay`.
pub async fn replay(
    args: &RouterDlqArgs,
    env: impl IntoIterator<Item = (String, String)>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let (nats, js) = open(args, env).await?;
    let stream = js
        .get_stream_no_info(topology::DLQ)
        .await
        .map_err(|e| CliError::Topology(format!("cannot read AUDIT_DLQ: {e}")))?;
    let mut replayed = 0;
    for m in read(&js, &filter(args.org.as_deref())?, args.limit).await? {
        let org = m.subject.split('.').nth(3).unwrap_or_default().to_owned();
        let subject = ingest_subject(&m, &org).map_err(|e| {
            CliError::Input(format!(
                "dead letter {} cannot be replayed: {e}",
                m.sequence
            ))
        })?;
        let msg_id = format!("dl-replay.{}", m.sequence);
        let mut h = async_nats::HeaderMap::new();
        for (name, values) in m.headers.iter() {
            let name: &str = name.as_ref();
            if name == headers::ERROR || name.starts_with("Nats-") {
                continue;
            }
            for v in values {
                h.append(name, v.as_str());
            }
        }
        h.insert(headers::MSG_ID, msg_id.as_str());
        publish_durable(&js, subject, &msg_id, h, m.payload.clone(), nats.publish_timeout)
            .await
            .map_err(|e| {
                CliError::Topology(format!(
                    "replayed {replayed}; dead letter {} could not be republished (it stays in the DLQ): {e}",
                    m.sequence
                ))
            })?;
        stream.delete_message(m.sequence).await.map_err(|e| {
            CliError::Topology(format!(
                "dead letter {} was republished but not deleted (replaying again stores it once): {e}",
                m.sequence
            ))
        })?;
        replayed += 1;
    }
    if json {
        writeln!(out, "{}", serde_json::json!({ "replayed": replayed }))?;
    } else {
        writeln!(out, "replayed {replayed} router dead letter(s)")?;
    }
    Ok(())
}
