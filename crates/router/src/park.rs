//! Events of workspaces the directory does not know yet: parked in AUDIT_PARKED (one
//! message per event, `audit.parked.<org>.<workspace>.<type>`) instead of being dropped,
//! sent back to AUDIT_INGEST once the workspace appears, and dead-lettered (counted) once
//! they waited longer than `park.max_age`.
//!
//! The sweep works from JetStream alone (subject counts from stream info, direct gets,
//! deletes by sequence), so any replica may run it at any time: two replicas republishing
//! the same parked event use the same `Nats-Msg-Id` (`unparked.<parked sequence>`), which
//! AUDIT_INGEST stores once.

use std::{sync::Arc, time::Duration};

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        stream::{DeleteMessageErrorKind, DirectGetErrorKind},
    },
};
use auditstream_bus::{PublishError, headers, publish_durable, subjects, topology};
use bytes::Bytes;
use futures_util::{TryStreamExt as _, future::join_all};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    config::ParkConfig,
    dead_letter::{DeadLetter, Reason, dead_letter},
    metrics::Metrics,
    table::RoutingTable,
};

/// One event of ingest message `from` to park.
pub struct Park {
    pub from: usize,
    pub org_id: String,
    pub subject: String,
    /// `parked.<org>.<event id>`: a redelivered ingest message parks its events once.
    pub msg_id: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Stores `parks`; returns the ingest messages (group indices) with an event that was
/// neither parked nor dead-lettered: they are nak'ed for another try. A full AUDIT_PARKED
/// dead-letters the event at once rather than refusing it for ever.
pub async fn park_all(
    js: &jetstream::Context,
    parks: Vec<Park>,
    metrics: &Metrics,
    timeout: Duration,
) -> Vec<usize> {
    let stores = parks.into_iter().map(|p| async move {
        let stored = publish_durable(
            js,
            p.subject.clone(),
            &p.msg_id,
            p.headers.clone(),
            p.body.clone(),
            timeout,
        )
        .await;
        let result = match stored {
            Ok(_) => {
                metrics.parked.inc();
                Ok(())
            }
            Err(PublishError::StreamFull(e)) => {
                let letter = DeadLetter {
                    org_id: &p.org_id,
                    msg_id: format!("dl.{}", p.msg_id),
                    headers: p.headers,
                    body: p.body,
                    reason: Reason::UnknownWorkspace,
                    detail: format!("AUDIT_PARKED is full ({e}); the workspace was not in the directory"),
                };
                dead_letter(js, letter, metrics, timeout).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(subject = %p.subject, error = %e, "event of an unknown workspace not parked; it will be redelivered");
                Some(p.from)
            }
        }
    });
    join_all(stores).await.into_iter().flatten().collect()
}

/// Sweeps AUDIT_PARKED every `check_interval` until `shutdown`.
pub async fn keep_unparking(
    js: jetstream::Context,
    mut table: watch::Receiver<Option<Arc<RoutingTable>>>,
    config: ParkConfig,
    metrics: Arc<Metrics>,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.check_interval) => {}
        }
        let Some(current) = table.borrow_and_update().clone() else {
            continue;
        };
        if let Err(e) = sweep(&js, &current, &config, &metrics, timeout).await {
            tracing::warn!(error = %e, "cannot sweep AUDIT_PARKED; trying again");
        }
    }
}

/// The workspace of a parked subject, if the directory knows it now.
fn known<'s>(table: &RoutingTable, subject: &'s str) -> Option<&'s str> {
    let workspace = subject.split('.').nth(3)?;
    table.nodes.contains_key(workspace).then_some(workspace)
}

/// One pass: every parked event of a workspace the directory knows goes back to
/// AUDIT_INGEST; then, oldest first, events past `max_age` go to the dead letters.
async fn sweep(
    js: &jetstream::Context,
    table: &RoutingTable,
    config: &ParkConfig,
    metrics: &Metrics,
    timeout: Duration,
) -> Result<(), String> {
    let stream = js
        .get_stream_no_info(topology::PARKED)
        .await
        .map_err(|e| e.to_string())?;
    let mut ready = Vec::new();
    let mut counts = stream
        .info_with_subjects(format!("{}.>", subjects::PARKED_PREFIX))
        .await
        .map_err(|e| e.to_string())?;
    while let Some((subject, _)) = counts.try_next().await.map_err(|e| e.to_string())? {
        if known(table, &subject).is_some() {
            ready.push(subject);
        }
    }
    for subject in ready {
        let mut next = None;
        loop {
            let message = match stream.direct_get_next_for_subject(&subject, next).await {
                Ok(m) => m,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(e.to_string()),
            };
            next = Some(message.sequence + 1);
            unpark(js, &stream, message, metrics, timeout).await?;
        }
    }
    // Oldest first: stop at the first event still inside its window.
    loop {
        let info = stream.get_info().await.map_err(|e| e.to_string())?;
        metrics.parked_messages.set(info.state.messages as i64);
        if info.state.messages == 0 {
            return Ok(());
        }
        let message = match stream.direct_get(info.state.first_sequence).await {
            Ok(m) => m,
            // Deleted by another replica's sweep meanwhile: look again.
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => continue,
            Err(e) => return Err(e.to_string()),
        };
        let waited = time::OffsetDateTime::now_utc() - message.time;
        if waited < config.max_age {
            return Ok(());
        }
        if known(table, &message.subject).is_some() {
            unpark(js, &stream, message, metrics, timeout).await?;
            continue;
        }
        let org_id = message.subject.split('.').nth(2).unwrap_or_default();
        let workspace = message.subject.split('.').nth(3).unwrap_or_default();
        let letter = DeadLetter {
            org_id,
            msg_id: format!("dl.parked.{}", message.sequence),
            headers: message.headers.clone(),
            body: message.payload.clone(),
            reason: Reason::UnknownWorkspace,
            detail: format!(
                "workspace {workspace} was not in the directory within {}",
                humantime_serde::re::humantime::format_duration(config.max_age)
            ),
        };
        dead_letter(js, letter, metrics, timeout)
            .await
            .map_err(|e| e.to_string())?;
        delete(&stream, message.sequence).await?;
    }
}

/// Republishes a parked event to its ingest subject, then deletes the parked copy.
async fn unpark(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream<()>,
    message: jetstream::message::StreamMessage,
    metrics: &Metrics,
    timeout: Duration,
) -> Result<(), String> {
    let subject = subjects::unparked(&message.subject)
        .ok_or_else(|| format!("{} is no parked subject", message.subject))?;
    let msg_id = format!("unparked.{}", message.sequence);
    let mut h = message.headers.clone();
    h.insert(headers::MSG_ID, msg_id.as_str());
    publish_durable(js, subject, &msg_id, h, message.payload.clone(), timeout)
        .await
        .map_err(|e| e.to_string())?;
    delete(stream, message.sequence).await?;
    metrics.unparked.inc();
    Ok(())
}

async fn delete(stream: &jetstream::stream::Stream<()>, sequence: u64) -> Result<(), String> {
    match stream.delete_message(sequence).await {
        Ok(_) => Ok(()),
        // Another replica's sweep took it first (and published the same message id).
        Err(e)
            if matches!(e.kind(), DeleteMessageErrorKind::JetStream(js)
                if js.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND) =>
        {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
